package restore_test

import (
	"archive/tar"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// davServer is a real WebDAV server (rclone) and the directory it serves.
type davServer struct {
	base, user, pass, dir string
}

func startDAV(t *testing.T) davServer {
	t.Helper()
	dir := t.TempDir()
	base, user, pass := testtool.StartRcloneWebDAV(t, dir)
	return davServer{base: base, user: user, pass: pass, dir: dir}
}

// restoreToDAV restores runID into prefix on s as operation opID.
func restoreToDAV(t *testing.T, s davServer, tg targets.Target, runID, prefix, opID string, mutate func(*restore.Request)) (restore.Result, error) {
	t.Helper()
	u, err := webdav.JoinURL(s.base, prefix)
	if err != nil {
		t.Fatal(err)
	}
	dav, err := webdav.New(u, secrets.WebDAV{Username: s.user, Password: s.pass}, webdav.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	req := restore.Request{JobID: jobID, RunID: runID, Target: tg, Sink: restore.WebDAV(dav.Tree(), opID),
		StagingDir: filepath.Join(t.TempDir(), "staging"), Logger: testLogger(t)}
	if mutate != nil {
		mutate(&req)
	}
	return restore.Restore(context.Background(), req)
}

// served lists the files rclone stores below dir, slash-separated, with their contents.
func served(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkOnlyBelow fails for every file s serves that is not in before and not below prefix.
func checkOnlyBelow(t *testing.T, s davServer, before map[string]string, prefix string) {
	t.Helper()
	for name := range served(t, s.dir) {
		if _, ok := before[name]; !ok && !strings.HasPrefix(name, prefix) {
			t.Errorf("%s was written outside the prefix", name)
		}
	}
}

// records reads the entry records of operation opID below prefix, by path.
func records(t *testing.T, s davServer, prefix, opID string) map[string]restore.MetaEntry {
	t.Helper()
	dir := filepath.Join(s.dir, filepath.FromSlash(prefix), ".bastion-meta", "restore", opID, "entries")
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]restore.MetaEntry{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := blake3.Sum256(b)
		if n.Name() != hex.EncodeToString(sum[:])+".json" {
			t.Errorf("record %s is not named by the BLAKE3 of its content", n.Name())
		}
		var e restore.MetaEntry
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		out[e.Path] = e
	}
	return out
}

func sampleSnapshot(t *testing.T) (targets.Target, string) {
	t.Helper()
	payload := zst(t, makeTar(t, tar.FormatPAX, []tarEntry{
		{tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
		{tar.Header{Name: "docs/", Typeflag: tar.TypeDir, Mode: 0o750}, ""},
		{tar.Header{Name: "docs/a.txt", Mode: 0o640, Uid: 1000, Gid: 100}, "alpha"},
		{tar.Header{Name: "docs/deep/b.txt"}, "bravo"}, // its directory has no entry of its own
		{tar.Header{Name: "top.txt"}, "top"},
		{tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}, ""},
		{tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "top.txt"}, ""},
	}))
	return publishIndexed(t, [][]byte{payload}, "none", "", nil)
}

func TestRestoreToWebDAV(t *testing.T) {
	t.Parallel()
	s := startDAV(t)
	tg, runID := sampleSnapshot(t)

	t.Run("Full", func(t *testing.T) {
		t.Parallel()
		op := uuid.NewString()
		res, err := restoreToDAV(t, s, tg, runID, "full/here", op, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := served(t, filepath.Join(s.dir, "full", "here"))
		for name, want := range map[string]string{"docs/a.txt": "alpha", "docs/deep/b.txt": "bravo", "top.txt": "top"} {
			if got[name] != want {
				t.Errorf("%s = %q, want %q", name, got[name], want)
			}
		}
		for name := range got {
			if !strings.HasPrefix(name, ".bastion-meta/") && name != "docs/a.txt" && name != "docs/deep/b.txt" && name != "top.txt" {
				t.Errorf("unexpected file %s (symlinks and hard links are not materialized)", name)
			}
		}
		if res.Written != 4 || res.Unsupported != 2 || res.Skipped != 0 || res.Bytes != 13 {
			t.Errorf("result %+v", res)
		}
		recs := records(t, s, "full/here", op)
		if len(recs) != 6 {
			t.Fatalf("%d records, want 6: %+v", len(recs), recs)
		}
		a := recs["docs/a.txt"]
		if a.Kind != "file" || a.Action != restore.ActionWritten || *a.Mode != 0o640 || *a.UID != 1000 || *a.GID != 100 ||
			*a.Size != 5 || *a.MTime != 1_600_000_000 {
			t.Errorf("record of docs/a.txt %+v", a)
		}
		if l := recs["link"]; l.Kind != "symlink" || l.LinkName != "/etc/passwd" || l.Action != restore.ActionSkippedUnsupported {
			t.Errorf("record of link %+v", l)
		}
		if h := recs["hard"]; h.Kind != "hardlink" || h.LinkName != "top.txt" || h.Action != restore.ActionSkippedUnsupported {
			t.Errorf("record of hard %+v", h)
		}
		if d := recs["docs"]; d.Kind != "dir" || d.Action != restore.ActionWritten {
			t.Errorf("record of docs %+v", d)
		}
	})

	t.Run("Selection", func(t *testing.T) {
		t.Parallel()
		op := uuid.NewString()
		_, err := restoreToDAV(t, s, tg, runID, "sel", op, func(r *restore.Request) {
			r.Selection = &restore.Selection{Dirs: []string{"docs/deep"}, Files: []string{"top.txt"}}
		})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for name := range served(t, filepath.Join(s.dir, "sel")) {
			if !strings.HasPrefix(name, ".bastion-meta/") {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		if strings.Join(names, ",") != "docs/deep/b.txt,top.txt" {
			t.Errorf("restored %v", names)
		}
		if len(records(t, s, "sel", op)) != 2 {
			t.Error("want one record per selected entry")
		}
	})

	t.Run("ConflictPolicies", func(t *testing.T) {
		t.Parallel()
		prefix := filepath.Join(s.dir, "conflict")
		seed := func(t *testing.T) {
			if err := os.MkdirAll(filepath.Join(prefix, "docs"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(prefix, "docs", "a.txt"), []byte("old content"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		seed(t)
		op := uuid.NewString()
		_, err := restoreToDAV(t, s, tg, runID, "conflict", op, func(r *restore.Request) { r.Conflict = restore.ConflictFail })
		var re *restore.Error
		if !errors.As(err, &re) || re.Code != restore.CodeConflict {
			t.Fatalf("fail: err = %v, want restore_conflict", err)
		}
		if b, _ := os.ReadFile(filepath.Join(prefix, "docs", "a.txt")); string(b) != "old content" {
			t.Fatalf("fail policy changed the file: %q", b)
		}

		op = uuid.NewString()
		res, err := restoreToDAV(t, s, tg, runID, "conflict", op, func(r *restore.Request) { r.Conflict = restore.ConflictSkip })
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(prefix, "docs", "a.txt")); string(b) != "old content" {
			t.Fatalf("skip policy changed the file: %q", b)
		}
		if res.Skipped != 1 || records(t, s, "conflict", op)["docs/a.txt"].Action != restore.ActionSkippedExisting {
			t.Errorf("skip: result %+v", res)
		}
		if b, _ := os.ReadFile(filepath.Join(prefix, "top.txt")); string(b) != "top" {
			t.Errorf("skip policy did not restore the rest: %q", b)
		}

		op = uuid.NewString()
		if _, err := restoreToDAV(t, s, tg, runID, "conflict", op, func(r *restore.Request) { r.Conflict = restore.ConflictOverwrite }); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(prefix, "docs", "a.txt")); string(b) != "alpha" {
			t.Fatalf("overwrite: %q", b)
		}
		if records(t, s, "conflict", op)["docs/a.txt"].Action != restore.ActionWritten {
			t.Error("overwrite: record is not written")
		}
	})

	t.Run("HostilePathsStayInsidePrefix", func(t *testing.T) {
		t.Parallel()
		payload := zst(t, makeTar(t, tar.FormatPAX, []tarEntry{
			{tar.Header{Name: "../escape.txt"}, "x"},
			{tar.Header{Name: "/abs.txt"}, "x"},
			{tar.Header{Name: "a/../../up.txt"}, "x"},
			{tar.Header{Name: "C:/drive.txt"}, "x"},
			{tar.Header{Name: "%2e%2e/%2e%2e/enc.txt"}, "enc"},
			{tar.Header{Name: "..%2f..%2fenc2.txt"}, "enc2"},
			{tar.Header{Name: "a\\..\\..\\bs.txt"}, "x"},
			{tar.Header{Name: "ok.txt"}, "ok"},
		}))
		tg, runID := publishIndexed(t, [][]byte{payload}, "none", "", nil)
		s := startDAV(t) // its own server: nothing else writes there while the files are compared
		// A sibling of the prefix that an escape would reach.
		if err := os.MkdirAll(filepath.Join(s.dir, "jail"), 0o755); err != nil {
			t.Fatal(err)
		}
		before := served(t, s.dir)
		res, err := restoreToDAV(t, s, tg, runID, "jail/inner", uuid.NewString(), nil)
		var re *restore.Error
		if !errors.As(err, &re) || re.Code != restore.CodeUnsafeEntries {
			t.Fatalf("err = %v, want unsafe_entries", err)
		}
		if res.Refused != 5 {
			t.Errorf("refused %d: %+v", res.Refused, res.RefusedSample)
		}
		checkOnlyBelow(t, s, before, "jail/inner/")
		inner := served(t, filepath.Join(s.dir, "jail", "inner"))
		if inner["ok.txt"] != "ok" || inner["%2e%2e/%2e%2e/enc.txt"] != "enc" || inner["..%2f..%2fenc2.txt"] != "enc2" {
			t.Errorf("inside the prefix: %v", inner)
		}
	})

	t.Run("HostileOperationID", func(t *testing.T) {
		t.Parallel()
		// The operation id names the metadata collection: one that climbs out of it, or names
		// a path, is refused before anything is made.
		for i, op := range []string{"", "..", "../../escape", "a/b", `a\b`, "x\x00y", strings.Repeat("o", 300)} {
			prefix := fmt.Sprintf("hostile-op-%d", i)
			_, err := restoreToDAV(t, s, tg, runID, prefix, op, nil)
			var re *restore.Error
			if !errors.As(err, &re) || re.Code != restore.CodeDestination {
				t.Errorf("op %q: err = %v, want destination", op, err)
			}
			if _, err := os.Stat(filepath.Join(s.dir, prefix)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("op %q: the destination was made: %v", op, err)
			}
		}
		if _, err := os.Stat(filepath.Join(s.dir, "escape")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("an operation id escaped: %v", err)
		}
	})

	t.Run("Canceled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		u, _ := webdav.JoinURL(s.base, "canceled")
		dav, err := webdav.New(u, secrets.WebDAV{Username: s.user, Password: s.pass}, webdav.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = restore.Restore(ctx, restore.Request{JobID: jobID, RunID: runID, Target: tg,
			Sink: restore.WebDAV(dav.Tree(), uuid.NewString()), StagingDir: filepath.Join(t.TempDir(), "st")})
		if err == nil {
			t.Fatal("a canceled restore succeeded")
		}
		if _, err := os.Stat(filepath.Join(s.dir, "canceled", "top.txt")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a canceled restore wrote files: %v", err)
		}
	})
}

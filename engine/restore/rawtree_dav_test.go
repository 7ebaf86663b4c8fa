package restore_test

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// payloadFiles is what served found below a prefix, without the restore's records.
func payloadFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := served(t, dir)
	for name := range out {
		if strings.HasPrefix(name, restore.MetaDir+"/") {
			delete(out, name)
		}
	}
	return out
}

// TestRawTreeToWebDAV: a raw_tree_v1 snapshot restores to WebDAV by the same rules as an archive.
func TestRawTreeToWebDAV(t *testing.T) {
	t.Parallel()
	s := startDAV(t)

	// A real raw tree backup of a small tree on a local target.
	src := filepath.Join(t.TempDir(), "src")
	testtool.WriteFile(t, filepath.Join(src, "docs", "a.txt"), []byte("alpha"), 0o640, timeZero)
	testtool.WriteFile(t, filepath.Join(src, "docs", "deep", "b.txt"), []byte("bravo"), 0o644, timeZero)
	testtool.WriteFile(t, filepath.Join(src, "top.txt"), []byte("top"), 0o644, timeZero)
	if err := os.MkdirAll(filepath.Join(src, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("top.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "top.txt"), filepath.Join(src, "hard.txt")); err != nil {
		t.Fatal(err)
	}
	tg := newLocalTarget(t)
	b := runBackup(t, tg, rawSpec(t, src, nil), nil)
	arch := strings.TrimPrefix(src, "/")

	t.Run("Full", func(t *testing.T) {
		t.Parallel()
		op := uuid.NewString()
		res, err := restoreToDAV(t, s, tg, b.runID, "full/here", op, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := payloadFiles(t, filepath.Join(s.dir, "full", "here"))
		want := map[string]string{arch + "/docs/a.txt": "alpha", arch + "/docs/deep/b.txt": "bravo", arch + "/top.txt": "top", arch + "/hard.txt": "top"}
		if len(got) != len(want) {
			t.Errorf("restored %v, want %v (a symlink is not materialized, hard links are files)", got, want)
		}
		for name, body := range want {
			if got[name] != body {
				t.Errorf("%s = %q, want %q", name, got[name], body)
			}
		}
		if fi, err := os.Stat(filepath.Join(s.dir, "full", "here", arch, "empty")); err != nil || !fi.IsDir() {
			t.Errorf("the empty directory was not made: %v", err)
		}
		if res.Unsupported != 1 || res.Skipped != 0 || res.Refused != 0 || res.Bytes != 16 {
			t.Errorf("result %+v", res)
		}
		recs := records(t, s, "full/here", op)
		if int64(len(recs)) != res.EntriesSeen {
			t.Errorf("%d records for %d entries", len(recs), res.EntriesSeen)
		}
		a := recs[arch+"/docs/a.txt"]
		if a.Kind != "file" || a.Action != restore.ActionWritten || a.Mode == nil || *a.Mode != 0o640 ||
			*a.Size != 5 || *a.MTime != timeZero.Unix() || *a.UID != int64(os.Getuid()) {
			t.Errorf("record of docs/a.txt %+v", a)
		}
		if l := recs[arch+"/link"]; l.Kind != "symlink" || l.LinkName != "top.txt" || l.Action != restore.ActionSkippedUnsupported {
			t.Errorf("record of link %+v", l)
		}
		if d := recs[arch+"/empty"]; d.Kind != "dir" || d.Action != restore.ActionWritten {
			t.Errorf("record of empty %+v", d)
		}
		if h, top := recs[arch+"/hard.txt"], recs[arch+"/top.txt"]; h.HardlinkGroup == "" || h.HardlinkGroup != top.HardlinkGroup ||
			h.Action != restore.ActionWritten || h.Kind != "file" {
			t.Errorf("records of the hard-linked pair: %+v, %+v", h, top)
		}
	})

	// What WebDAV cannot hold of a record goes into its entry record.
	t.Run("RecordsKeepXattrsAndGroups", func(t *testing.T) {
		t.Parallel()
		g, v := "7:42", base64.StdEncoding.EncodeToString([]byte("v\x00\xff"))
		a, b := rawFile("a", "same"), rawFile("b", "same")
		a.HardlinkGroup, b.HardlinkGroup = &g, &g
		a.Xattrs = map[string]string{"user.k": v, "user.bad": "not base64!"}
		tg, runID, _ := publishRaw(t, []format.Entry{a, b}, map[string]string{"a": "same", "b": "same"})
		op := uuid.NewString()
		if _, err := restoreToDAV(t, s, tg, runID, "xattrs", op, nil); err != nil {
			t.Fatal(err)
		}
		recs := records(t, s, "xattrs", op)
		if ra := recs["a"]; ra.HardlinkGroup != g || len(ra.Xattrs) != 1 || ra.Xattrs["user.k"] != v {
			t.Errorf("record of a %+v", ra)
		}
		if rb := recs["b"]; rb.HardlinkGroup != g || rb.Xattrs != nil {
			t.Errorf("record of b %+v", rb)
		}
		if got := payloadFiles(t, filepath.Join(s.dir, "xattrs")); got["a"] != "same" || got["b"] != "same" {
			t.Errorf("on the server: %v", got)
		}
	})

	t.Run("Selection", func(t *testing.T) {
		t.Parallel()
		op := uuid.NewString()
		_, err := restoreToDAV(t, s, tg, b.runID, "sel", op, func(r *restore.Request) {
			r.Selection = &restore.Selection{Dirs: []string{arch + "/docs/deep"}, Files: []string{arch + "/top.txt"}}
		})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for name := range payloadFiles(t, filepath.Join(s.dir, "sel")) {
			names = append(names, name)
		}
		sort.Strings(names)
		if strings.Join(names, ",") != arch+"/docs/deep/b.txt,"+arch+"/top.txt" {
			t.Errorf("restored %v", names)
		}
		recs := records(t, s, "sel", op)
		if len(recs) != 3 { // docs/deep, docs/deep/b.txt, top.txt
			t.Errorf("want one record per selected entry: %+v", recs)
		}
	})

	t.Run("ConflictPolicies", func(t *testing.T) {
		t.Parallel()
		tg, runID, _ := publishRaw(t, []format.Entry{{Path: "d", Kind: format.KindDir}, rawFile("d/a.txt", "new a"), rawFile("top.txt", "top")},
			map[string]string{"d/a.txt": "new a", "top.txt": "top"})
		prefix := filepath.Join(s.dir, "conflict")
		testtool.WriteFile(t, filepath.Join(prefix, "d", "a.txt"), []byte("old a"), 0o644, timeZero)
		testtool.WriteFile(t, filepath.Join(prefix, "d", "mine.txt"), []byte("keep"), 0o644, timeZero)
		read := func(name string) string {
			b, _ := os.ReadFile(filepath.Join(prefix, filepath.FromSlash(name)))
			return string(b)
		}

		_, err := restoreToDAV(t, s, tg, runID, "conflict", uuid.NewString(), func(r *restore.Request) { r.Conflict = restore.ConflictFail })
		var re *restore.Error
		if !errors.As(err, &re) || re.Code != restore.CodeConflict {
			t.Fatalf("fail: err = %v, want restore_conflict", err)
		}
		if read("d/a.txt") != "old a" {
			t.Fatal("fail policy changed the file")
		}

		op := uuid.NewString()
		res, err := restoreToDAV(t, s, tg, runID, "conflict", op, func(r *restore.Request) { r.Conflict = restore.ConflictSkip })
		if err != nil {
			t.Fatal(err)
		}
		if read("d/a.txt") != "old a" || read("top.txt") != "top" {
			t.Fatalf("skip: d/a.txt %q, top.txt %q", read("d/a.txt"), read("top.txt"))
		}
		if res.Skipped != 1 || records(t, s, "conflict", op)["d/a.txt"].Action != restore.ActionSkippedExisting {
			t.Errorf("skip: result %+v", res)
		}

		op = uuid.NewString()
		if _, err := restoreToDAV(t, s, tg, runID, "conflict", op, func(r *restore.Request) { r.Conflict = restore.ConflictOverwrite }); err != nil {
			t.Fatal(err)
		}
		if read("d/a.txt") != "new a" || read("d/mine.txt") != "keep" {
			t.Fatalf("overwrite: d/a.txt %q, d/mine.txt %q", read("d/a.txt"), read("d/mine.txt"))
		}
		if records(t, s, "conflict", op)["d/a.txt"].Action != restore.ActionWritten {
			t.Error("overwrite: record is not written")
		}
	})

	// A data/ file that does not match the index fails the restore and is never uploaded, nor
	// does it cost the file it would have replaced.
	t.Run("DamagedData", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name, data, reason string
		}{
			{"SameSizeOtherBytes", "abd", "hash_mismatch"},
			{"Longer", "abcdef", "size_mismatch"},
			{"Shorter", "ab", "size_mismatch"},
			{"Missing", "", "missing"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				data := map[string]string{"first.txt": "first", "after.txt": "after"}
				if tc.data != "" {
					data["f.txt"] = tc.data
				}
				tg, runID, _ := publishRaw(t, []format.Entry{rawFile("first.txt", "first"), rawFile("f.txt", "abc"), rawFile("after.txt", "after")}, data)
				prefix := "damaged-" + tc.name
				testtool.WriteFile(t, filepath.Join(s.dir, prefix, "f.txt"), []byte("old"), 0o644, timeZero)
				op := uuid.NewString()
				_, err := restoreToDAV(t, s, tg, runID, prefix, op, nil)
				var pe *restore.PartError
				var re *restore.Error
				if !errors.As(err, &pe) || pe.Reason != tc.reason || pe.Part != "data/f.txt" || !errors.As(err, &re) || re.Code != restore.CodePart {
					t.Fatalf("err = %v, want part_invalid %s of data/f.txt", err, tc.reason)
				}
				got := payloadFiles(t, filepath.Join(s.dir, prefix))
				if got["f.txt"] != "old" || got["first.txt"] != "first" || len(got) != 2 {
					t.Fatalf("on the server: %v; want first.txt and the old f.txt only", got)
				}
				if _, ok := records(t, s, prefix, op)["f.txt"]; ok {
					t.Error("the damaged file has a record")
				}
			})
		}
	})

	t.Run("HostileRecordsStayInsidePrefix", func(t *testing.T) {
		t.Parallel()
		neg := format.FileEntry("neg.txt", -1, "00")
		tg, runID, _ := publishRaw(t, []format.Entry{
			rawFile("../escape.txt", "x"), rawFile("/abs.txt", "x"), rawFile("a/../../up.txt", "x"), rawFile("C:/drive.txt", "x"),
			rawFile("a\\..\\..\\bs.txt", "x"), neg, {Path: "nolink", Kind: format.KindSymlink}, rawFile("ctl\x01.txt", "x"),
			{Path: "dev", Kind: "char_special"},
			rawFile("%2e%2e/%2e%2e/enc.txt", "enc"), rawFile("ok.txt", "ok"),
		}, map[string]string{"%2e%2e/%2e%2e/enc.txt": "enc", "ok.txt": "ok", "neg.txt": ""})
		s := startDAV(t) // its own server: nothing else writes there while the files are compared
		if err := os.MkdirAll(filepath.Join(s.dir, "jail"), 0o755); err != nil {
			t.Fatal(err)
		}
		before := served(t, s.dir)
		res, err := restoreToDAV(t, s, tg, runID, "jail/inner", uuid.NewString(), nil)
		var re *restore.Error
		if !errors.As(err, &re) || re.Code != restore.CodeUnsafeEntries {
			t.Fatalf("err = %v, want unsafe_entries", err)
		}
		if res.Refused != 9 || res.Written != 2 {
			t.Errorf("result %+v", res)
		}
		checkOnlyBelow(t, s, before, "jail/inner/")
		inner := payloadFiles(t, filepath.Join(s.dir, "jail", "inner"))
		if len(inner) != 2 || inner["ok.txt"] != "ok" || inner["%2e%2e/%2e%2e/enc.txt"] != "enc" {
			t.Errorf("inside the prefix: %v", inner)
		}
	})
}

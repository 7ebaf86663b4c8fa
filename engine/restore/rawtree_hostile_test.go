package restore_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// publishRaw writes a raw_tree_v1 snapshot by hand into a local target: data holds the data/
// files by archive path, written as given, whatever the index says about them.
func publishRaw(t *testing.T, entries []format.Entry, data map[string]string) (*localdir.Target, string, string) {
	t.Helper()
	tg := newLocalTarget(t)
	runID := uuid.NewString()
	dir := filepath.Join(tg.BaseDir(), jobID, runID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for p, body := range data {
		fp := filepath.Join(dir, "data", filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(fp), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var lines bytes.Buffer
	for _, e := range entries {
		if err := e.AppendLine(&lines); err != nil {
			t.Fatal(err)
		}
	}
	enc, _ := zstd.NewWriter(nil)
	idx := enc.EncodeAll(lines.Bytes(), nil)
	m, err := format.Manifest{FormatVersion: 1, JobID: jobID, RunID: runID, StartedAt: "2024-01-01T00:00:00Z", EndedAt: "2024-01-01T00:00:01Z",
		Pipeline:   format.Pipeline{Format: format.FormatRawTreeV1, Tar: "none", Compression: "none", Encryption: "none"},
		EntryIndex: format.EntryIndex{Name: targets.EntriesName, Count: int64(len(entries))}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{targets.EntriesName: idx, targets.ManifestName: m, targets.CompleteName: []byte("{}")} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return tg, runID, dir
}

func rawFile(p, body string) format.Entry {
	h := blake3.Sum256([]byte(body))
	return format.FileEntry(p, int64(len(body)), hex.EncodeToString(h[:]))
}

func rawLink(p, target string) format.Entry {
	return format.Entry{Path: p, Kind: format.KindSymlink, SymlinkTarget: &target}
}

func restoreRaw(t *testing.T, tg targets.Target, runID, dest string, policy string) (restore.Result, error) {
	t.Helper()
	return restore.Restore(context.Background(), restore.Request{JobID: jobID, RunID: runID, Target: tg, Destination: dest,
		Conflict: policy, StagingDir: filepath.Join(t.TempDir(), "st"), Logger: testLogger(t)})
}

// TestRawTreeHostileIndex: the index and data/ come from the target, so whoever can write there
// must not reach outside the destination (or read outside the run) through them.
func TestRawTreeHostileIndex(t *testing.T) {
	t.Parallel()
	t.Run("PathEscape", func(t *testing.T) {
		t.Parallel()
		o := testtool.NewOutsideFile(t)
		rel, _ := filepath.Rel(t.TempDir(), o.Path) // "../xxx/secret"-like
		tg, runID, _ := publishRaw(t, []format.Entry{
			rawFile("ok.txt", "fine"), rawFile("../../../../../../../.."+o.Path, "pwned"), rawFile(o.Path, "pwned"),
			rawFile(rel, "pwned"), rawFile("a/../../x", "pwned"),
		}, map[string]string{"ok.txt": "fine"})
		dest := filepath.Join(t.TempDir(), "dest")
		res, err := restoreRaw(t, tg, runID, dest, "")
		wantRefused(t, res, err, o.Path, "absolute")
		if res.Refused != 4 || res.Written != 1 {
			t.Fatalf("result %+v, want 4 refused and ok.txt written", res)
		}
		o.Untouched(t)
		if b, _ := os.ReadFile(o.Path); string(b) != "secret" {
			t.Fatal("outside file overwritten")
		}
	})
	t.Run("SymlinkSwap", func(t *testing.T) {
		t.Parallel()
		o := testtool.NewOutsideFile(t)
		tg, runID, _ := publishRaw(t, []format.Entry{
			rawLink("x", o.Dir), rawFile("x/secret", "pwned"), rawFile("x/new", "pwned"),
		}, map[string]string{"x/secret": "pwned", "x/new": "pwned"})
		dest := filepath.Join(t.TempDir(), "dest")
		res, err := restoreRaw(t, tg, runID, dest, "")
		wantRefused(t, res, err, "x/secret", "symlink")
		o.Untouched(t)
		if _, err := os.Lstat(filepath.Join(o.Dir, "new")); err == nil {
			t.Fatal("a file was written through the planted symlink")
		}
	})
	t.Run("SizeMismatch", func(t *testing.T) {
		t.Parallel()
		e := rawFile("f.txt", "abc")
		tg, runID, _ := publishRaw(t, []format.Entry{e}, map[string]string{"f.txt": "abcdefghij"})
		dest := filepath.Join(t.TempDir(), "dest")
		_, err := restoreRaw(t, tg, runID, dest, "")
		var pe *restore.PartError
		if !errors.As(err, &pe) || pe.Reason != "size_mismatch" || pe.Part != "data/f.txt" {
			t.Fatalf("err = %v, want size_mismatch of data/f.txt", err)
		}
		if got := listTree(t, dest); len(got) != 0 {
			t.Fatalf("a file failing its check left %v", got)
		}
	})
	t.Run("HashMismatch", func(t *testing.T) {
		t.Parallel()
		tg, runID, _ := publishRaw(t, []format.Entry{rawFile("f.txt", "abc")}, map[string]string{"f.txt": "abd"})
		_, err := restoreRaw(t, tg, runID, filepath.Join(t.TempDir(), "dest"), "")
		var pe *restore.PartError
		if !errors.As(err, &pe) || pe.Reason != "hash_mismatch" {
			t.Fatalf("err = %v, want hash_mismatch", err)
		}
	})
	t.Run("DataFileIsSymlinkOnTarget", func(t *testing.T) {
		t.Parallel()
		// data/leak on a local target is a symlink to a file the node can read: the restore
		// must not copy that file into the destination.
		o := testtool.NewOutsideFile(t)
		tg, runID, dir := publishRaw(t, []format.Entry{rawFile("leak", "secret"), rawFile("d/f", "secret")}, nil)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(o.Path, filepath.Join(dir, "data", "leak")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(o.Dir, filepath.Join(dir, "data", "d")); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(t.TempDir(), "dest")
		_, err := restoreRaw(t, tg, runID, dest, "")
		var pe *restore.PartError
		if !errors.As(err, &pe) || pe.Part != "data/leak" {
			t.Fatalf("err = %v, want a refusal of data/leak", err)
		}
		vr, err := restore.Verify(context.Background(), restore.VerifyRequest{JobID: jobID, RunID: runID, Target: tg, ScratchDir: filepath.Join(t.TempDir(), "v")})
		if err != nil || vr.OK || vr.FilesFailed != 2 {
			t.Fatalf("verify through planted symlinks = %+v, %v; want both files failed", vr, err)
		}
		if got := listTree(t, dest); len(got) != 0 {
			t.Fatalf("restore through a planted symlink left %v", got)
		}
	})
}

// TestRawTreeConflicts: directories merge under every policy; a file where a directory goes
// is replaced (overwrite), blocks its subtree (skip) or aborts (fail).
func TestRawTreeConflicts(t *testing.T) {
	t.Parallel()
	entries := []format.Entry{{Path: "d", Kind: format.KindDir}, rawFile("d/a.txt", "new a"), {Path: "blk", Kind: format.KindDir}, rawFile("blk/x", "x")}
	data := map[string]string{"d/a.txt": "new a", "blk/x": "x"}
	for _, tc := range []struct {
		policy   string
		wantErr  string
		wantA    string
		wantBlkX bool
	}{
		{restore.ConflictOverwrite, "", "new a", true},
		{restore.ConflictSkip, "", "old a", false},
		{restore.ConflictFail, restore.CodeConflict, "old a", false},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			tg, runID, _ := publishRaw(t, entries, data)
			dest := filepath.Join(t.TempDir(), "dest")
			testtool.WriteFile(t, filepath.Join(dest, "d", "a.txt"), []byte("old a"), 0o644, timeZero)
			testtool.WriteFile(t, filepath.Join(dest, "d", "mine.txt"), []byte("keep"), 0o644, timeZero)
			testtool.WriteFile(t, filepath.Join(dest, "blk"), []byte("a file where a dir goes"), 0o644, timeZero)
			_, err := restoreRaw(t, tg, runID, dest, tc.policy)
			var re *restore.Error
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (!errors.As(err, &re) || re.Code != tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if b, _ := os.ReadFile(filepath.Join(dest, "d", "a.txt")); string(b) != tc.wantA {
				t.Fatalf("d/a.txt = %q, want %q", b, tc.wantA)
			}
			if b, _ := os.ReadFile(filepath.Join(dest, "d", "mine.txt")); string(b) != "keep" {
				t.Fatal("merging a directory lost unrelated content")
			}
			if _, err := os.Stat(filepath.Join(dest, "blk", "x")); (err == nil) != tc.wantBlkX {
				t.Fatalf("blk/x restored = %v, want %v", err == nil, tc.wantBlkX)
			}
		})
	}
}

package restore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// A snapshot taken with symlink_policy follow holds no links: restoring it gives regular files
// and directories with the links' targets' content, under the links' names.
func TestRestoreOfFollowBackupGivesRegularFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, outside := filepath.Join(dir, "src"), filepath.Join(dir, "outside")
	for p, body := range map[string]string{
		filepath.Join(src, "f.txt"):      "hello",
		filepath.Join(src, "d", "g.txt"): "gee",
		filepath.Join(outside, "x.txt"):  "far away",
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"flink": "f.txt", "dlink": "d", "ext": outside, "loop": "."} {
		if err := os.Symlink(target, filepath.Join(src, link)); err != nil {
			t.Fatal(err)
		}
	}
	tg := newLocalTarget(t)
	b := runBackup(t, tg, fsSpec(t, func(s *jobspec.Spec) { s.Filesystem.SymlinkPolicy = jobspec.SymlinkFollow }, src), nil)
	dest := filepath.Join(t.TempDir(), "dest")
	res, err := restore.Restore(context.Background(), restore.Request{
		JobID: jobID, RunID: b.runID, Target: tg, Destination: dest,
		StagingDir: filepath.Join(t.TempDir(), "rs"), Logger: testLogger(t),
	})
	if err != nil || res.Refused != 0 {
		t.Fatalf("restore: %v %+v", err, res)
	}
	root := testtool.ArchivePath(dest, src)
	for rel, want := range map[string]string{"flink": "hello", "dlink/g.txt": "gee", "ext/x.txt": "far away", "f.txt": "hello"} {
		p := filepath.Join(root, rel)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%s: %v %v, want a regular file", rel, fi, err)
		}
		if got, _ := os.ReadFile(p); string(got) != want {
			t.Fatalf("%s holds %q, want %q", rel, got, want)
		}
	}
	for _, d := range []string{"dlink", "ext"} {
		if fi, err := os.Lstat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Fatalf("%s: %v %v, want a directory", d, fi, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "loop")); !os.IsNotExist(err) {
		t.Fatalf("the loop link was restored: %v", err)
	}
}

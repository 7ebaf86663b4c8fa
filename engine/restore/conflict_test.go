package restore_test

import (
	"errors"
	"github.com/bastion-backup/bastion/engine/testtool"
	"os"
	"path/filepath"
	"testing"

	"github.com/bastion-backup/bastion/engine/restore"
)

func TestConflictPolicies(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src")
	testtool.WriteFile(t, filepath.Join(src, "dir", "a.txt"), []byte("new a"), 0o644, timeZero)
	testtool.WriteFile(t, filepath.Join(src, "dir", "b.txt"), []byte("new b"), 0o644, timeZero)
	tg := newLocalTarget(t)
	b := runBackup(t, tg, fsSpec(t, nil, src), nil)
	for _, tc := range []struct {
		policy  string
		wantA   string
		wantErr string
	}{
		{restore.ConflictOverwrite, "new a", ""},
		{restore.ConflictSkip, "old a", ""},
		{restore.ConflictFail, "old a", restore.CodeConflict},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "dest")
			root := testtool.ArchivePath(dest, src)
			testtool.WriteFile(t, filepath.Join(root, "dir", "a.txt"), []byte("old a"), 0o600, timeZero)
			testtool.WriteFile(t, filepath.Join(root, "dir", "unrelated.txt"), []byte("keep me"), 0o600, timeZero)
			_, _, err := restoreRun(t, tg, b.runID, nil, func(r *restore.Request) {
				r.Destination, r.Conflict = dest, tc.policy
			})
			var re *restore.Error
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (!errors.As(err, &re) || re.Code != tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if got, _ := os.ReadFile(filepath.Join(root, "dir", "a.txt")); string(got) != tc.wantA {
				t.Fatalf("a.txt = %q, want %q", got, tc.wantA)
			}
			// Never: wiping a directory's unrelated content.
			if got, _ := os.ReadFile(filepath.Join(root, "dir", "unrelated.txt")); string(got) != "keep me" {
				t.Fatal("unrelated content of an existing directory was lost")
			}
			if tc.policy != restore.ConflictFail {
				if got, _ := os.ReadFile(filepath.Join(root, "dir", "b.txt")); string(got) != "new b" {
					t.Fatal("b.txt not restored")
				}
			}
		})
	}
	// Selection: one file, normalised.
	_, dest, err := restoreRun(t, tg, b.runID, nil, func(r *restore.Request) {
		r.Selection = &restore.Selection{Files: []string{" ./" + arch(src) + "/dir/b.txt "}, Dirs: []string{"../x"}}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(testtool.ArchivePath(dest, src), "dir", "a.txt")); err == nil {
		t.Fatal("unselected file restored")
	}
	if got, _ := os.ReadFile(filepath.Join(testtool.ArchivePath(dest, src), "dir", "b.txt")); string(got) != "new b" {
		t.Fatal("selected file not restored")
	}
	_, _, err = restoreRun(t, tg, b.runID, nil, func(r *restore.Request) { r.Selection = &restore.Selection{Dirs: []string{"/", ".."}} })
	var re *restore.Error
	if !errors.As(err, &re) || re.Code != restore.CodeSelection {
		t.Fatalf("empty selection: %v", err)
	}
}

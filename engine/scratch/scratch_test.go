package scratch

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEmpty(t *testing.T) {
	t.Parallel()
	t.Run("MissingDirIsEmpty", func(t *testing.T) {
		t.Parallel()
		if err := Empty(filepath.Join(t.TempDir(), "absent")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("RemovesChildrenKeepsDir", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		deep := filepath.Join(dir, "run-1", "staging", "payload.part000001")
		if err := os.MkdirAll(filepath.Dir(deep), 0o700); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{deep, filepath.Join(dir, "loose.tmp")} {
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := Empty(dir); err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) != 0 {
			t.Fatalf("after Empty: %v %v", entries, err)
		}
	})
	t.Run("NotADirectory", func(t *testing.T) {
		t.Parallel()
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Empty(f); err == nil {
			t.Fatal("emptying a file: want an error")
		}
	})
}

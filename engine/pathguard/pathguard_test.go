package pathguard_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bastion-backup/bastion/engine/pathguard"
)

func TestWithin(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	data := filepath.Join(root, "data")
	other := filepath.Join(root, "other")
	for _, d := range []string{data, other, filepath.Join(data, "sub")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(root, "link-to-data")
	if err := os.Symlink(data, link); err != nil {
		t.Fatal(err)
	}
	dataLink := filepath.Join(root, "data-link") // the data dir itself reached through a symlink
	if err := os.Symlink(data, dataLink); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, p, dir string
		want         bool
	}{
		{"Equal", data, data, true},
		{"Below", filepath.Join(data, "sub"), data, true},
		{"NotYetCreatedBelow", filepath.Join(data, "new", "deeper"), data, true},
		{"Sibling", other, data, false},
		{"PrefixNotParent", data + "2", data, false},
		{"SymlinkToData", link, data, true},
		{"BelowSymlinkNotYetCreated", filepath.Join(link, "backups", "x"), data, true},
		{"DataDirGivenAsSymlink", filepath.Join(data, "sub"), dataLink, true},
		{"OutsideWithDataAsSymlink", other, dataLink, false},
		{"DotDot", filepath.Join(other, "..", "data", "x"), data, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pathguard.Within(tc.p, tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Within(%s, %s) = %v, want %v", tc.p, tc.dir, got, tc.want)
			}
		})
	}
}

// Overlaps also catches a parent of the data directory, resolved through symlinks.
func TestOverlaps(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	data := filepath.Join(root, "lib", "bastion")
	other := filepath.Join(root, "other")
	for _, d := range []string{data, other} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	toLib := filepath.Join(other, "to-lib")
	if err := os.Symlink(filepath.Dir(data), toLib); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, p string
		want    bool
	}{
		{"Inside", filepath.Join(data, "x"), true},
		{"Parent", filepath.Dir(data), true},
		{"Root", "/", true},
		{"SymlinkToParent", toLib, true},
		{"Sibling", other, false},
		{"NotYetCreatedSibling", filepath.Join(other, "new"), false},
	} {
		got, err := pathguard.Overlaps(tc.p, data)
		if err != nil || got != tc.want {
			t.Errorf("%s: Overlaps(%s) = %v, %v; want %v", tc.name, tc.p, got, err, tc.want)
		}
	}
	if got, _ := pathguard.Overlaps("/", ""); got {
		t.Error("no data directory overlaps nothing")
	}
}

package docsite_test

import (
	"bytes"
	"io/fs"
	"slices"
	"testing"

	"github.com/bastion-backup/bastion/httpapi/docsite"
	"github.com/bastion-backup/bastion/httpapi/docsite/internal/render"
)

// TestSiteUpToDate fails when docs/ changed without `go generate ./httpapi/docsite`: the embedded
// pages must be exactly what the docs render to now.
func TestSiteUpToDate(t *testing.T) {
	t.Parallel()
	want, _, err := render.Site("../../docs")
	if err != nil {
		t.Fatal(err)
	}
	site := docsite.FS()
	var have []string
	err = fs.WalkDir(site, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			have = append(have, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var wantNames []string
	for name := range want {
		wantNames = append(wantNames, name)
	}
	slices.Sort(wantNames)
	if !slices.Equal(have, wantNames) {
		t.Fatalf("embedded pages %v, docs render to %v: run go generate ./httpapi/docsite", have, wantNames)
	}
	for name, b := range want {
		got, err := fs.ReadFile(site, name)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s is stale: run go generate ./httpapi/docsite", name)
		}
	}
}

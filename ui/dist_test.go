//go:build embedui

package ui

import (
	"io/fs"
	"strings"
	"testing"
)

func TestReleaseBuildEmbedsTheApp(t *testing.T) {
	t.Parallel()
	if IsPlaceholder() {
		t.Fatal("-tags embedui embedded the placeholder; run scripts/ui-build first")
	}
	entries, err := fs.ReadDir(FS(), "assets")
	if err != nil {
		t.Fatalf("assets/ missing from the embedded build: %v", err)
	}
	var js bool
	for _, e := range entries {
		js = js || strings.HasSuffix(e.Name(), ".js")
	}
	if !js {
		t.Fatal("no JavaScript under assets/")
	}
}

package ui

import (
	"io/fs"
	"testing"
)

func TestFSServesIndexAtRoot(t *testing.T) {
	t.Parallel()
	b, err := fs.ReadFile(FS(), "index.html")
	if err != nil {
		t.Fatalf("index.html missing from the embedded build: %v", err)
	}
	if len(b) == 0 {
		t.Fatal("index.html is empty")
	}
}

// Package ui holds the built web app. A plain `go build` embeds only a placeholder page (committed
// under placeholder/), so the Hub builds on a machine without Node. Release builds run
// scripts/ui-build and then `go build -tags embedui`, which embeds the real ui/dist instead; that
// build fails if dist was never built, so a release cannot ship the placeholder by accident.
// At run time BASTION_UI_DIR can point the Hub at a dist directory on disk instead (development, e2e).
package ui

import (
	"bytes"
	"io/fs"
)

// FS returns the embedded build rooted at its top directory (so "index.html" is at the top).
func FS() fs.FS {
	sub, err := fs.Sub(embedded, embeddedRoot)
	if err != nil {
		panic("ui: embedded build missing: " + err.Error()) // impossible: embed guarantees the directory
	}
	return sub
}

// IsPlaceholder reports whether the embedded build is only the placeholder page, so the Hub can say
// in its log that the real UI was not built into this binary.
func IsPlaceholder() bool {
	b, err := fs.ReadFile(FS(), "index.html")
	return err != nil || bytes.Contains(b, []byte("bastion-ui-placeholder"))
}

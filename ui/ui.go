// Package ui holds the built web app. Release builds embed ui/dist into the binary; a committed
// placeholder page keeps `go build` working on a machine without Node. Build the real app with
// `npm run build` (scripts/run does it when the sources changed).
package ui

import (
	"bytes"
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// FS returns the embedded build, rooted at dist/ (so "index.html" is at the top).
func FS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic("ui: embedded dist missing: " + err.Error()) // impossible: embed guarantees the directory
	}
	return sub
}

// IsPlaceholder reports whether the embedded build is only the committed placeholder page, so the
// Hub can say in its log that the real UI was not built into this binary.
func IsPlaceholder() bool {
	b, err := fs.ReadFile(dist, "dist/index.html")
	return err != nil || bytes.Contains(b, []byte("bastion-ui-placeholder"))
}

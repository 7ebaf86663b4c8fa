// Package docsite holds the operator docs (docs/*.md at the top of the repository) rendered to
// HTML, embedded in the binary and served under /docs. The pages are generated and committed, so
// the Hub builds on a clean checkout without running anything; after changing docs/, run
// `go generate ./httpapi/docsite` (TestSiteUpToDate fails until then).
package docsite

import (
	"embed"
	"io/fs"
)

//go:generate go run ./gen -docs ../../docs -out site

//go:embed site
var embedded embed.FS

// FS returns the rendered site: index.html, docs.css and <name>.html per document.
func FS() fs.FS {
	sub, err := fs.Sub(embedded, "site")
	if err != nil {
		panic("docsite: embedded site missing: " + err.Error()) // impossible: embed guarantees the directory
	}
	return sub
}

// Command gen renders the operator docs into httpapi/docsite/site (run by go generate there).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bastion-backup/bastion/httpapi/docsite/internal/render"
)

func main() {
	docs := flag.String("docs", "../../docs", "directory of the operator docs (*.md)")
	out := flag.String("out", "site", "directory to write the pages to (emptied first)")
	flag.Parse()
	if err := run(*docs, *out); err != nil {
		fmt.Fprintln(os.Stderr, "docsite:", err)
		os.Exit(1)
	}
}

func run(docs, out string) error {
	files, _, err := render.Site(docs)
	if err != nil {
		return err
	}
	// Emptied first so that a document removed from docs/ leaves no page behind.
	if err := os.RemoveAll(out); err != nil {
		return fmt.Errorf("clear %s: %w", out, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(out, name), b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

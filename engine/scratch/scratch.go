// Package scratch holds the one helper for scratch directories that the Hub and the agent share:
// at start, what a crash left in runs/ and operations/ is of no use to anyone and goes.
package scratch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Empty removes everything inside dir and keeps dir itself. A dir that does not exist is already
// empty. It tries every entry and reports all failures.
func Empty(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("empty %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err) // os.RemoveAll's *PathError already names the path
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("empty %s: %w", dir, err)
	}
	return nil
}

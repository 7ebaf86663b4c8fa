// Package pathguard answers whether a path lies inside a directory the way the file system sees
// it: symlinks resolved, also for a path that does not exist yet (its longest existing prefix is
// resolved and the rest appended). A lexical check alone lets a symlink to the Hub's data
// directory through.
package pathguard

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Resolve returns the absolute, clean form of p with every symlink in its longest existing
// prefix resolved; the components that do not exist yet are appended as they are.
func Resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", p, err)
	}
	var rest []string
	cur := abs
	for {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			for i := len(rest) - 1; i >= 0; i-- {
				real = filepath.Join(real, rest[i])
			}
			return filepath.Clean(real), nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, os.ErrNotExist) && !isNotDir(err) {
			return "", fmt.Errorf("resolve %s: %w", p, err)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil // nothing exists, not even the root: keep the lexical form
		}
		rest = append(rest, filepath.Base(cur))
		cur = parent
	}
}

// isNotDir matches ENOTDIR: a component of the path is a file, so the rest cannot exist either.
func isNotDir(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "not a directory")
}

// Within reports whether p is dir or lies below it, both resolved (Resolve). The lexical forms
// are compared too, so a data directory that cannot be resolved still guards its own path.
func Within(p, dir string) (bool, error) {
	if dir == "" {
		return false, nil
	}
	rp, err := Resolve(p)
	if err != nil {
		return false, err
	}
	rd, err := Resolve(dir)
	if err != nil {
		return false, err
	}
	ap, _ := filepath.Abs(p)
	ad, _ := filepath.Abs(dir)
	return under(rp, rd) || under(ap, ad) || under(rp, ad), nil
}

// Overlaps reports whether p is dir, lies below it, or contains it, both resolved: a restore
// into a parent of the data directory (/, /var/lib) writes over the data directory as surely as
// one inside it, when the snapshot holds its path.
func Overlaps(p, dir string) (bool, error) {
	if dir == "" {
		return false, nil
	}
	inside, err := Within(p, dir)
	if err != nil || inside {
		return inside, err
	}
	return Within(dir, p)
}

func under(p, dir string) bool {
	p, dir = filepath.Clean(p), filepath.Clean(dir)
	if p == dir {
		return true
	}
	if !strings.HasSuffix(dir, string(filepath.Separator)) {
		dir += string(filepath.Separator)
	}
	return strings.HasPrefix(p, dir)
}

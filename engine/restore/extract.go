package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// extractor writes tar entries under dest.
type extractor struct {
	dest   string
	policy string
	sel    *matcher
	res    *Result
	buf    []byte
	dirs   []dirMeta
}

type dirMeta struct {
	path  string
	mode  fs.FileMode
	mtime time.Time
}

func (x *extractor) refuse(name, reason string) {
	x.res.Refused++
	if len(x.res.RefusedSample) < maxSamples {
		x.res.RefusedSample = append(x.res.RefusedSample, Refusal{Path: name, Reason: reason})
	}
}

func (x *extractor) entry(ctx context.Context, h *tar.Header, tr io.Reader) error {
	if n := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/"); n == "" || n == "." {
		return nil // the archive's own root ("./" from tar -C dir .): that is dest itself
	}
	rel, why := cleanName(h.Name)
	if why != "" {
		x.refuse(h.Name, why)
		return nil
	}
	if x.sel != nil && !x.sel.match(rel) {
		return nil
	}
	target := filepath.Join(x.dest, filepath.FromSlash(rel))
	// Every existing ancestor inside dest must be a real directory: writing through a symlink
	// (even one this archive created a moment ago) could land outside dest.
	if why := x.checkParents(rel); why != "" {
		x.refuse(rel, why)
		return nil
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return x.dir(rel, target, h)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return x.file(ctx, rel, target, h, tr)
	case tar.TypeSymlink:
		return x.symlink(rel, target, h)
	case tar.TypeLink:
		return x.hardlink(rel, target, h)
	default:
		x.refuse(rel, fmt.Sprintf("unsupported entry type %q", h.Typeflag))
		return nil
	}
}

func (x *extractor) checkParents(rel string) string { return checkParents(x.dest, rel) }

// checkParents walks the ancestors of rel (a cleanName result) below dest with Lstat. Missing
// ones are fine (they will be created as directories); symlinks and non-directories are not.
func checkParents(dest, rel string) string {
	segs := strings.Split(rel, "/")
	cur := dest
	for _, s := range segs[:len(segs)-1] {
		cur = filepath.Join(cur, s)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return ""
		}
		if err != nil {
			return "cannot inspect parent: " + err.Error()
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return "parent " + strings.TrimPrefix(cur, dest+string(filepath.Separator)) + " is a symlink"
		}
		if !fi.IsDir() {
			return "parent " + strings.TrimPrefix(cur, dest+string(filepath.Separator)) + " is not a directory"
		}
	}
	return ""
}

func (x *extractor) mkParents(target string) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("create parent directories: %w", err)}
	}
	return nil
}

// conflict applies the policy for a non-directory entry to whatever is at target. It returns
// proceed=false when the entry is to be skipped.
func (x *extractor) conflict(rel, target string) (proceed bool, err error) {
	fi, err := os.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, &Error{Code: CodeIO, Err: fmt.Errorf("inspect %s: %w", rel, err)}
	}
	switch x.policy {
	case ConflictSkip:
		x.res.Skipped++
		return false, nil
	case ConflictFail:
		return false, &Error{Code: CodeConflict, Err: fmt.Errorf("%s already exists (conflict policy fail)", rel)}
	}
	if fi.IsDir() {
		// Only an empty directory is replaced; a populated one would lose unrelated content.
		if err := os.Remove(target); err != nil {
			return false, &Error{Code: CodeConflict, Err: fmt.Errorf("%s is a non-empty directory; not replaced by a file: %w", rel, err)}
		}
	}
	return true, nil
}

func (x *extractor) dir(rel, target string, h *tar.Header) error {
	fi, err := os.Lstat(target)
	switch {
	case err == nil && fi.IsDir():
		if x.policy == ConflictSkip {
			x.res.Skipped++
			return nil // children are still restored; the existing directory keeps its metadata
		}
	case err == nil:
		// A file or symlink stands where a directory goes.
		switch x.policy {
		case ConflictSkip:
			x.res.Skipped++
			return nil
		case ConflictFail:
			return &Error{Code: CodeConflict, Err: fmt.Errorf("%s already exists (conflict policy fail)", rel)}
		}
		if err := os.Remove(target); err != nil {
			return &Error{Code: CodeIO, Err: fmt.Errorf("remove %s: %w", rel, err)}
		}
		fallthrough
	default:
		if err := x.mkParents(target); err != nil {
			return err
		}
		if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return &Error{Code: CodeIO, Err: fmt.Errorf("create directory %s: %w", rel, err)}
		}
	}
	// Mode and mtime are applied at the end, children first, so a read-only directory can
	// still be filled and writing children does not disturb its mtime.
	x.dirs = append(x.dirs, dirMeta{path: target, mode: fs.FileMode(h.Mode) & fs.ModePerm, mtime: h.ModTime})
	x.res.Written++
	return nil
}

func (x *extractor) file(ctx context.Context, rel, target string, h *tar.Header, tr io.Reader) error {
	ok, err := x.conflict(rel, target)
	if err != nil || !ok {
		return err
	}
	if err := x.mkParents(target); err != nil {
		return err
	}
	// Write beside the target and rename over it: an existing file is replaced atomically
	// and a symlink in its place is replaced, not followed.
	tmp, err := os.CreateTemp(filepath.Dir(target), ".bastion-restore-*")
	if err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("create %s: %w", rel, err)}
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	n, err := x.copy(ctx, tmp, tr)
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = &Error{Code: CodeIO, Err: fmt.Errorf("write %s: %w", rel, cerr)}
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(tmpName, modeOf(h)); err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("chmod %s: %w", rel, err)}
	}
	if err := os.Chtimes(tmpName, h.ModTime, h.ModTime); err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("set mtime of %s: %w", rel, err)}
	}
	if err := os.Rename(tmpName, target); err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("place %s: %w", rel, err)}
	}
	x.res.Written++
	x.res.Bytes += n
	return nil
}

func modeOf(h *tar.Header) fs.FileMode {
	m := fs.FileMode(h.Mode) & fs.ModePerm
	if h.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if h.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if h.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

func (x *extractor) copy(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, &Error{Code: CodeCanceled, Err: err}
		}
		n, err := src.Read(x.buf)
		if n > 0 {
			if _, werr := dst.Write(x.buf[:n]); werr != nil {
				return total, &Error{Code: CodeIO, Err: fmt.Errorf("write: %w", werr)}
			}
			total += int64(n)
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, &streamErr{err: err}
		}
	}
}

// linkSlot makes room at target for a symlink or hard link, which cannot be renamed into place
// like a file: it applies the conflict policy, creates the parents and removes what the link
// replaces. ok is false when the entry is to be skipped.
func (x *extractor) linkSlot(rel, target string) (ok bool, err error) {
	ok, err = x.conflict(rel, target)
	if err != nil || !ok {
		return ok, err
	}
	if err := x.mkParents(target); err != nil {
		return false, err
	}
	if fi, err := os.Lstat(target); err == nil && !fi.IsDir() {
		if err := os.Remove(target); err != nil {
			return false, &Error{Code: CodeIO, Err: fmt.Errorf("replace %s: %w", rel, err)}
		}
	}
	return true, nil
}

func (x *extractor) symlink(rel, target string, h *tar.Header) error {
	ok, err := x.linkSlot(rel, target)
	if err != nil || !ok {
		return err
	}
	// The link itself lives inside dest whatever it points to; entries that would be written
	// through it are refused by checkParents.
	if err := os.Symlink(h.Linkname, target); err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("create symlink %s: %w", rel, err)}
	}
	x.res.Written++
	return nil
}

func (x *extractor) hardlink(rel, target string, h *tar.Header) error {
	linkRel, why := cleanName(h.Linkname)
	if why != "" {
		x.refuse(rel, "hard link target: "+why)
		return nil
	}
	if why := x.checkParents(linkRel); why != "" {
		x.refuse(rel, "hard link target: "+why)
		return nil
	}
	src := filepath.Join(x.dest, filepath.FromSlash(linkRel))
	sfi, err := os.Lstat(src)
	if err != nil {
		if x.sel != nil {
			x.refuse(rel, "hard link target "+linkRel+" is not part of the selection")
			return nil
		}
		x.refuse(rel, "hard link target "+linkRel+" does not exist")
		return nil
	}
	if !sfi.Mode().IsRegular() {
		x.refuse(rel, "hard link target "+linkRel+" is not a regular file")
		return nil
	}
	ok, err := x.linkSlot(rel, target)
	if err != nil || !ok {
		return err
	}
	if err := os.Link(src, target); err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("create hard link %s: %w", rel, err)}
	}
	x.res.Written++
	return nil
}

// finishDirs applies directory modes and mtimes, deepest first.
func (x *extractor) finishDirs() error {
	slices.SortStableFunc(x.dirs, func(a, b dirMeta) int { return len(b.path) - len(a.path) })
	for _, d := range x.dirs {
		if err := os.Chmod(d.path, d.mode); err != nil {
			return &Error{Code: CodeIO, Err: fmt.Errorf("chmod %s: %w", d.path, err)}
		}
		if err := os.Chtimes(d.path, d.mtime, d.mtime); err != nil {
			return &Error{Code: CodeIO, Err: fmt.Errorf("set mtime of %s: %w", d.path, err)}
		}
	}
	return nil
}

// Selection chooses what to restore: exact files, and directories with everything below them.
type Selection struct {
	Files []string `json:"files"`
	Dirs  []string `json:"dirs"`
}

type matcher struct {
	files map[string]bool
	dirs  []string
}

// normalizeSelPath trims, turns \ into /, strips leading ./ and /, and trailing /; "" means drop.
func normalizeSelPath(p string) string {
	p = strings.TrimSpace(strings.ReplaceAll(p, "\\", "/"))
	for {
		switch {
		case strings.HasPrefix(p, "./"):
			p = p[2:]
		case strings.HasPrefix(p, "/"):
			p = p[1:]
		default:
			p = strings.TrimRight(p, "/")
			for _, seg := range strings.Split(p, "/") {
				if seg == ".." {
					return ""
				}
			}
			return p
		}
	}
}

// Validate checks that the selection names something once normalized (paths with "..", or
// empty ones, are dropped), so that a request can be refused before a restore starts.
func (s *Selection) Validate() error {
	_, err := s.normalize()
	return err
}

func (s *Selection) normalize() (*matcher, error) {
	m := &matcher{files: map[string]bool{}}
	for _, f := range s.Files {
		if n := normalizeSelPath(f); n != "" {
			m.files[n] = true
		}
	}
	for _, d := range s.Dirs {
		if n := normalizeSelPath(d); n != "" {
			m.dirs = append(m.dirs, n)
		}
	}
	if len(m.files) == 0 && len(m.dirs) == 0 {
		return nil, errors.New("the selection is empty after normalization")
	}
	return m, nil
}

func (m *matcher) match(p string) bool {
	if m.files[p] {
		return true
	}
	for _, d := range m.dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

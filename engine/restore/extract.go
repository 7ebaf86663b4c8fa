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

	"golang.org/x/sys/unix"
)

// extractor writes tar entries under dest.
type extractor struct {
	d      *destDir
	policy string
	// keepSpecial keeps setuid, setgid and sticky bits from the archive (Request.KeepSpecialBits).
	keepSpecial bool
	sel         *matcher
	res         *Result
	buf         []byte
	dirs        []dirMeta
}

type dirMeta struct {
	rel   string
	mode  uint32
	mtime time.Time
}

func (x *extractor) refuse(name, reason string) { refuse(x.res, name, reason) }

func refuse(res *Result, name, reason string) {
	res.Refused++
	if len(res.RefusedSample) < maxSamples {
		res.RefusedSample = append(res.RefusedSample, Refusal{Path: name, Reason: reason})
	}
}

// run extracts the entries of tr until its end. A failure to read the archive is a *streamErr.
func (x *extractor) run(ctx context.Context, tr *tar.Reader, each func()) error {
	return readEntries(ctx, tr, x, x.sel, x.res, each)
}

// readEntries hands the entries of tr to w until the archive ends: each one's name cleaned
// (unsafe ones refused) and matched against the selection. A failure to read the archive is a
// *streamErr.
func readEntries(ctx context.Context, tr *tar.Reader, w entryWriter, sel *matcher, res *Result, each func()) error {
	for {
		if err := ctx.Err(); err != nil {
			return &Error{Code: CodeCanceled, Err: err}
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &streamErr{err: fmt.Errorf("read tar: %w", err)}
		}
		res.EntriesSeen++
		if rel, ok := selectEntry(h, sel, res); ok {
			if err := w.write(ctx, rel, h, tr); err != nil {
				return err
			}
		}
		each()
	}
}

// selectEntry is the clean relative path of an entry to restore; false for the archive's own
// root, an unsafe name (refused) and an entry the selection leaves out.
func selectEntry(h *tar.Header, sel *matcher, res *Result) (string, bool) {
	if n := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/"); n == "" || n == "." {
		return "", false // the archive's own root ("./" from tar -C dir .): that is dest itself
	}
	rel, why := cleanName(h.Name)
	if why != "" {
		refuse(res, h.Name, why)
		return "", false
	}
	if sel != nil && !sel.match(rel) {
		return "", false
	}
	return rel, true
}

// write writes one entry below dest (extractor is the local directory's entryWriter).
func (x *extractor) write(ctx context.Context, rel string, h *tar.Header, tr io.Reader) error {
	switch h.Typeflag {
	case tar.TypeDir:
		return x.dir(rel, h)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return x.file(ctx, rel, h, tr)
	case tar.TypeSymlink:
		return x.symlink(rel, h)
	case tar.TypeLink:
		return x.hardlink(rel, h)
	default:
		x.refuse(rel, fmt.Sprintf("unsupported entry type %q", h.Typeflag))
		return nil
	}
}

// at opens (creating what is missing) the directory that will hold rel. Every ancestor inside
// dest must be a real directory: writing through a symlink (even one this archive created a
// moment ago) could land outside dest, so such an entry is refused (ok false).
func (x *extractor) at(rel string) (dirfd int, base string, ok bool, err error) {
	dirfd, base, why, err := x.d.parent(rel, true)
	if err != nil {
		return -1, "", false, &Error{Code: CodeIO, Err: fmt.Errorf("%s: %w", rel, err)}
	}
	if why != "" {
		x.refuse(rel, why)
		return -1, "", false, nil
	}
	return dirfd, base, true, nil
}

// checkParents walks the ancestors of rel (a cleanName result) below dest with Lstat. Missing
// ones are fine; symlinks and non-directories are not. Verify uses it for index paths.
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

// conflict applies the policy for a non-directory entry to whatever is at base below dirfd.
// It returns proceed=false when the entry is to be skipped, and occupied when a non-directory
// is still there (an empty directory in the way has been removed).
func (x *extractor) conflict(rel string, dirfd int, base string) (proceed, occupied bool, err error) {
	mode, exists, err := lstatAt(dirfd, base)
	if err != nil {
		return false, false, &Error{Code: CodeIO, Err: fmt.Errorf("inspect %s: %w", rel, err)}
	}
	if !exists {
		return true, false, nil
	}
	switch x.policy {
	case ConflictSkip:
		x.res.Skipped++
		return false, false, nil
	case ConflictFail:
		return false, false, &Error{Code: CodeConflict, Err: fmt.Errorf("%s already exists (conflict policy fail)", rel)}
	}
	if mode == unix.S_IFDIR {
		// Only an empty directory is replaced; a populated one would lose unrelated content.
		if err := x.d.remove(dirfd, base, rel, true); err != nil {
			return false, false, &Error{Code: CodeConflict, Err: fmt.Errorf("%s is a non-empty directory; not replaced by a file: %w", rel, err)}
		}
		return true, false, nil
	}
	return true, true, nil
}

func (x *extractor) dir(rel string, h *tar.Header) error {
	dirfd, base, ok, err := x.at(rel)
	if err != nil || !ok {
		return err
	}
	mode, exists, err := lstatAt(dirfd, base)
	if err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("inspect %s: %w", rel, err)}
	}
	switch {
	case exists && mode == unix.S_IFDIR:
		if x.policy == ConflictSkip {
			x.res.Skipped++
			return nil // children are still restored; the existing directory keeps its metadata
		}
	case exists:
		// A file or symlink stands where a directory goes.
		switch x.policy {
		case ConflictSkip:
			x.res.Skipped++
			return nil
		case ConflictFail:
			return &Error{Code: CodeConflict, Err: fmt.Errorf("%s already exists (conflict policy fail)", rel)}
		}
		if err := x.makeDir(dirfd, base, rel, true); err != nil {
			return err
		}
	default:
		if err := x.makeDir(dirfd, base, rel, false); err != nil {
			return err
		}
	}
	// Mode and mtime are applied at the end, children first, so a read-only directory can
	// still be filled and writing children does not disturb its mtime.
	x.dirs = append(x.dirs, dirMeta{rel: rel, mode: unixMode(h.Mode, x.keepSpecial), mtime: h.ModTime})
	x.res.Written++
	return nil
}

// makeDir makes directory rel (base in dirfd), one already there being fine; with replace it
// first removes the non-directory standing in its place.
func (x *extractor) makeDir(dirfd int, base, rel string, replace bool) error {
	if replace {
		if err := x.d.remove(dirfd, base, rel, false); err != nil {
			return &Error{Code: CodeIO, Err: fmt.Errorf("remove %s: %w", rel, err)}
		}
	}
	if err := unix.Mkdirat(dirfd, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return &Error{Code: CodeIO, Err: fmt.Errorf("create directory %s: %w", rel, err)}
	}
	return nil
}

func (x *extractor) file(ctx context.Context, rel string, h *tar.Header, tr io.Reader) error {
	dirfd, base, ok, err := x.at(rel)
	if err != nil || !ok {
		return err
	}
	if ok, _, err := x.conflict(rel, dirfd, base); err != nil || !ok {
		return err
	}
	// Write beside the target and rename over it: an existing file is replaced atomically
	// and a symlink in its place is replaced, not followed.
	tmp, tmpName, err := createTemp(dirfd)
	if err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("create %s: %w", rel, err)}
	}
	placed := false
	defer func() {
		if !placed {
			unix.Unlinkat(dirfd, tmpName, 0)
		}
	}()
	n, err := x.copy(ctx, tmp, tr)
	if err == nil {
		// Special bits are set after the last write: a write by a non-root process clears them.
		if cerr := unix.Fchmod(int(tmp.Fd()), unixMode(h.Mode, x.keepSpecial)); cerr != nil {
			err = &Error{Code: CodeIO, Err: fmt.Errorf("chmod %s: %w", rel, cerr)}
		}
	}
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = &Error{Code: CodeIO, Err: fmt.Errorf("write %s: %w", rel, cerr)}
	}
	if err != nil {
		return err
	}
	if err := setTimesAt(dirfd, tmpName, h.ModTime); err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("set mtime of %s: %w", rel, err)}
	}
	if err := unix.Renameat(dirfd, tmpName, dirfd, base); err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("place %s: %w", rel, err)}
	}
	placed = true
	x.res.Written++
	x.res.Bytes += n
	return nil
}

func (x *extractor) copy(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	return copyEntry(ctx, x.buf, dst, src)
}

// linkSlot makes room for a symlink or hard link at rel, which cannot be renamed into place
// like a file: it opens the parent, applies the conflict policy and removes what the link
// replaces. ok is false when the entry is skipped or refused.
func (x *extractor) linkSlot(rel string) (dirfd int, base string, ok bool, err error) {
	dirfd, base, ok, err = x.at(rel)
	if err != nil || !ok {
		return -1, "", false, err
	}
	ok, occupied, err := x.conflict(rel, dirfd, base)
	if err != nil || !ok {
		return -1, "", false, err
	}
	if occupied {
		if err := x.d.remove(dirfd, base, rel, false); err != nil {
			return -1, "", false, &Error{Code: CodeIO, Err: fmt.Errorf("replace %s: %w", rel, err)}
		}
	}
	return dirfd, base, true, nil
}

func (x *extractor) symlink(rel string, h *tar.Header) error {
	dirfd, base, ok, err := x.linkSlot(rel)
	if err != nil || !ok {
		return err
	}
	// The link itself lives inside dest whatever it points to: nothing the restore does
	// afterwards goes through it (parents are opened O_NOFOLLOW, modes and times are applied
	// without following).
	if err := unix.Symlinkat(h.Linkname, dirfd, base); err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("create symlink %s: %w", rel, err)}
	}
	x.res.Written++
	return nil
}

func (x *extractor) hardlink(rel string, h *tar.Header) error {
	linkRel, why := cleanName(h.Linkname)
	if why != "" {
		x.refuse(rel, "hard link target: "+why)
		return nil
	}
	missing := func() error {
		if x.sel != nil {
			x.refuse(rel, "hard link target "+linkRel+" is not part of the selection")
		} else {
			x.refuse(rel, "hard link target "+linkRel+" does not exist")
		}
		return nil
	}
	sfd, sbase, why, err := x.d.parent(linkRel, false)
	switch {
	case errors.Is(err, errMissing):
		return missing()
	case err != nil:
		return &Error{Code: CodeIO, Err: fmt.Errorf("hard link %s: %w", rel, err)}
	case why != "":
		x.refuse(rel, "hard link target: "+why)
		return nil
	}
	// The link's own parent is opened next, which may replace the cached one: keep a copy.
	sfd, err = unix.FcntlInt(uintptr(sfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("hard link %s: %w", rel, err)}
	}
	defer unix.Close(sfd)
	mode, exists, err := lstatAt(sfd, sbase)
	if err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("inspect hard link target of %s: %w", rel, err)}
	}
	if !exists {
		return missing()
	}
	if mode != unix.S_IFREG {
		x.refuse(rel, "hard link target "+linkRel+" is not a regular file")
		return nil
	}
	dirfd, base, ok, err := x.linkSlot(rel)
	if err != nil || !ok {
		return err
	}
	// linkat without AT_SYMLINK_FOLLOW links the name itself, never what it might point to.
	if err := unix.Linkat(sfd, sbase, dirfd, base, 0); err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("create hard link %s: %w", rel, err)}
	}
	x.res.Written++
	return nil
}

// finishDirs applies directory modes and mtimes, deepest first, only to what is still a real
// directory reached without following a symlink. A directory that a later entry replaced (by
// a symlink, say, that points outside dest) is refused instead: applying its mode through the
// replacement is how a crafted archive would chmod a file anywhere.
func (x *extractor) finishDirs() error {
	slices.SortStableFunc(x.dirs, func(a, b dirMeta) int { return len(b.rel) - len(a.rel) })
	for _, d := range x.dirs {
		dirfd, base, why, err := x.d.parent(d.rel, false)
		if errors.Is(err, errMissing) {
			why = "is gone"
		} else if err != nil {
			return &Error{Code: CodeIO, Err: fmt.Errorf("finish directory %s: %w", d.rel, err)}
		}
		if why == "" {
			why, err = chmodDirAt(dirfd, base, d.mode)
			if err != nil {
				return &Error{Code: CodeIO, Err: fmt.Errorf("chmod %s: %w", d.rel, err)}
			}
		}
		if why != "" {
			x.refuse(d.rel, why+" now (a later entry replaced the directory); its mode and mtime were not applied")
			continue
		}
		if err := setTimesAt(dirfd, base, d.mtime); err != nil {
			return &Error{Code: CodeIO, Err: fmt.Errorf("set mtime of %s: %w", d.rel, err)}
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

package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/glob"

	"github.com/bastion-backup/bastion/engine/jobspec"
)

// item is one filesystem object selected for the archive.
type item struct {
	fsPath string      // where it is read from
	arch   string      // archive path: forward slashes, no leading slash
	info   fs.FileInfo // from Lstat; from Stat when follow is set
	// follow: fsPath is a symlink archived as what it points to (symlink_policy follow), so it
	// is opened through the link.
	follow bool
	// at is the open directory fsPath was listed in, valid while emit runs: a file is opened
	// and stat'ed relative to it. Whoever keeps the item longer takes a reference (acquire)
	// and releases it, or clears at to fall back to fsPath. Zero for roots and extra items.
	at entryAt
	// listed: a regular file the walk took from its directory listing without a stat (walker
	// listFiles set); info is only its type. Whoever opens it stats the handle, which is the
	// stat the archive uses anyway.
	listed bool
}

// walkInfo is the walk's own stat of the item: nil when it had none (listed).
func (it item) walkInfo() fs.FileInfo {
	if it.listed {
		return nil
	}
	return it.info
}

// listedFile is the fs.FileInfo of a listed item: a regular file, nothing else known.
type listedFile struct{ name string }

func (f listedFile) Name() string       { return f.name }
func (f listedFile) Size() int64        { return 0 }
func (f listedFile) Mode() fs.FileMode  { return 0 }
func (f listedFile) ModTime() time.Time { return time.Time{} }
func (f listedFile) IsDir() bool        { return false }
func (f listedFile) Sys() any           { return nil }

// entryAt names a directory entry relative to its open directory.
type entryAt struct {
	dir  *openDir
	name string
}

// walkRoot is one selected source path.
type walkRoot struct {
	fsPath   string
	prefix   string // archive path of fsPath; "" means children are at their relative path
	emitSelf bool
}

// walker selects what a filesystem source emits, in a deterministic depth-first order (a
// directory before its children, children by name). It never opens anything but directories,
// and those with O_DIRECTORY|O_NONBLOCK so a FIFO swapped in cannot block it.
type walker struct {
	roots    []walkRoot
	include  []*glob.Pattern
	exclude  []*glob.Pattern
	symlinks string // keep | follow | skip
	issues   *fsIssues
	cons     *consistency // nil: vanished objects are only warnings (pre-scan, sqlite)
	// skipTop, when set, names top-level entries of a legacy root to leave out (Vaultwarden's
	// live database files).
	skipTop map[string]bool
	// listFiles: regular files, as the directory listing types them, are emitted listed, without
	// the stat a walk makes of every entry. Packaging stats the open file instead (a system call
	// per file less); the pre-scan, which needs sizes, and raw_tree, whose index takes them from
	// the walk, leave it unset.
	listFiles bool
	// fork, when set, walks subdirectories on other goroutines: only for a walk whose emit may be
	// called concurrently and in any order (the pre-scan, which only counts).
	fork *forker
}

// forker runs subtree walks on up to cap(slots) extra goroutines. A directory listing and a stat
// per entry block a thread in the kernel, not a core, so a few walkers overlap well even on 2
// cores, and the pre-scan runs before packaging, when nothing else uses them.
type forker struct {
	slots chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
}

func newForker(n int) *forker { return &forker{slots: make(chan struct{}, n)} }

// try runs fn on another goroutine if a slot is free, and reports whether it did.
func (f *forker) try(fn func() error) bool {
	select {
	case f.slots <- struct{}{}:
	default:
		return false
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer func() { <-f.slots }()
		if err := fn(); err != nil {
			f.mu.Lock()
			if f.err == nil {
				f.err = err
			}
			f.mu.Unlock()
		}
	}()
	return true
}

// wait returns once every forked walk has ended, with the first error one of them returned.
func (f *forker) wait() error {
	f.wg.Wait()
	return f.err
}

// compileGlobs compiles patterns without separators: like Rust's globset defaults, `*` crosses
// `/`, and patterns are matched against the whole archive path.
func compileGlobs(patterns []string) ([]*glob.Pattern, error) {
	out := make([]*glob.Pattern, 0, len(patterns))
	for _, p := range patterns {
		g, err := glob.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("compile glob %q: %w", p, err)
		}
		out = append(out, g)
	}
	return out, nil
}

// archivePrefix maps an absolute source path to its archive path: the path minus its root.
func archivePrefix(p string) string {
	return strings.TrimPrefix(filepath.ToSlash(filepath.Clean(p)), "/")
}

// newFilesystemWalker applies the path hygiene of backup.md §3.1 and returns a walker.
func newFilesystemWalker(src *jobspec.FilesystemSource, issues *fsIssues) (*walker, error) {
	inc, err := compileGlobs(src.Include)
	if err != nil {
		return nil, err
	}
	exc, err := compileGlobs(src.Exclude)
	if err != nil {
		return nil, err
	}
	w := &walker{include: inc, exclude: exc, symlinks: src.SymlinkPolicy, issues: issues}
	if strings.TrimSpace(src.Root) != "" {
		root := filepath.Clean(src.Root)
		fi, err := os.Stat(root)
		if err != nil {
			return nil, newErr(CodeSourceIO, KindSource, "Check that the source root exists and is readable.",
				fmt.Errorf("stat source root: %w", err))
		}
		if fi.IsDir() {
			w.roots = []walkRoot{{fsPath: root}}
		} else {
			w.roots = []walkRoot{{fsPath: root, prefix: filepath.Base(root), emitSelf: true}}
		}
		return w, nil
	}
	var kept []string
	for _, raw := range src.Paths {
		if strings.TrimSpace(raw) == "" {
			continue
		}
		p := filepath.Clean(raw)
		dup := false
		for _, k := range kept {
			if k == p {
				dup = true
				break
			}
			if isUnder(p, k) {
				if fi, err := os.Stat(k); err == nil && fi.IsDir() {
					issues.warn(archivePrefix(p), "path is inside the earlier selected directory "+k+"; dropped")
					dup = true
					break
				}
			}
		}
		if dup {
			continue
		}
		kept = append(kept, p)
		prefix := archivePrefix(p)
		w.roots = append(w.roots, walkRoot{fsPath: p, prefix: prefix, emitSelf: prefix != ""})
	}
	return w, nil
}

// isUnder reports whether p is strictly inside dir.
func isUnder(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}

func (w *walker) excluded(arch string, dir bool) bool {
	for _, g := range w.exclude {
		if g.Match(arch) || (dir && g.Match(arch+"/")) {
			return true
		}
	}
	return false
}

func (w *walker) included(arch string) bool {
	if len(w.include) == 0 {
		return true
	}
	for _, g := range w.include {
		if g.Match(arch) {
			return true
		}
	}
	return false
}

func joinArch(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "/" + name
}

// walk calls emit for every selected object. Errors reading the tree go through the issue
// recorder (and abort only under fail_fast); an error from emit aborts the walk.
func (w *walker) walk(ctx context.Context, emit func(item) error) error {
	err := w.walkRoots(ctx, emit)
	if w.fork != nil {
		if ferr := w.fork.wait(); err == nil {
			err = ferr
		}
	}
	return err
}

func (w *walker) walkRoots(ctx context.Context, emit func(item) error) error {
	for i, r := range w.roots {
		// Earlier roots nested in this one were emitted already.
		var earlier []string
		for _, e := range w.roots[:i] {
			if isUnder(e.fsPath, r.fsPath) {
				earlier = append(earlier, e.fsPath)
			}
		}
		fi, err := os.Lstat(r.fsPath)
		if err != nil {
			if err := w.issues.fail(r.prefix, fmt.Errorf("stat source path %s: %w", r.fsPath, err)); err != nil {
				return err
			}
			continue
		}
		if err := w.visit(ctx, r.fsPath, r.prefix, entryAt{}, fi, r.emitSelf, true, earlier, nil, emit); err != nil {
			return err
		}
	}
	return nil
}

// visit emits fsPath and, for a directory, its subtree. ancestors holds the (device, inode) of
// the directories on the path down to fsPath: under symlink_policy follow a link back into one
// of them (to an ancestor, or two links leading into each other) would never end.
func (w *walker) visit(ctx context.Context, fsPath, arch string, at entryAt, fi fs.FileInfo, emitSelf, top bool,
	earlier []string, ancestors [][2]uint64, emit func(item) error) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	follow := false // a legacy root's own symlink, or any under symlink_policy follow
	if fi.Mode()&fs.ModeSymlink != 0 && w.symlinks == jobspec.SymlinkFollow {
		tfi, err := os.Stat(fsPath)
		if err != nil {
			// Dangling or a chain of links that never ends: nothing to archive in its place.
			// An unreadable target is an error like any unreadable object.
			if errors.Is(err, fs.ErrNotExist) {
				if _, lerr := os.Lstat(fsPath); errors.Is(lerr, fs.ErrNotExist) {
					vanished(w.issues, w.cons, arch, fi, lerr, msgVanished)
					return nil
				}
			}
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
				w.issues.warn(arch, "symlink not followed: "+linkError(err))
				return nil
			}
			return w.issues.fail(arch, fmt.Errorf("follow symlink: %w", err))
		}
		fi, follow = tfi, true
	}
	mode := fi.Mode()
	isDir := mode.IsDir()
	if emitSelf && w.excluded(arch, isDir) {
		return nil
	}
	switch {
	case isDir:
	case mode.IsRegular():
		if !w.included(arch) {
			return nil
		}
	case mode&fs.ModeSymlink != 0:
		if w.symlinks == jobspec.SymlinkSkip {
			w.issues.warn(arch, "symlink skipped (symlink_policy skip)")
			return nil
		}
		if top && !emitSelf {
			// A legacy root that is a symlink: read what it points to.
			if tfi, err := os.Stat(fsPath); err == nil && tfi.IsDir() {
				fi, isDir, follow = tfi, true, true
				break
			}
		}
	default:
		w.issues.warn(arch, "special file skipped ("+describeMode(mode)+")")
		return nil
	}
	// Only a followed link can lead back up, but every directory on the way down is recorded so
	// such a link is recognised; other policies skip the stat.
	var id [2]uint64
	if isDir && w.symlinks == jobspec.SymlinkFollow {
		if st := statID(fi); st.HasID {
			id = [2]uint64{st.Dev, st.Ino}
			if follow && slices.Contains(ancestors, id) {
				w.issues.warn(arch, "symlink loop: leads back into a directory already being archived; not followed again")
				return nil
			}
		}
	}
	if emitSelf {
		_, listed := fi.(listedFile)
		if err := emit(item{fsPath: fsPath, arch: arch, info: fi, follow: follow, at: at, listed: listed}); err != nil {
			return err
		}
	}
	if !isDir {
		return nil
	}
	entries, dir, err := readDir(fsPath, follow)
	if err != nil {
		if !top && errors.Is(err, fs.ErrNotExist) {
			vanished(w.issues, w.cons, arch, fi, err, msgDirVanished)
			return nil
		}
		return w.issues.fail(arch, fmt.Errorf("read directory: %w", err))
	}
	d := newOpenDir(dir)
	defer d.release()
	sub := ancestors
	if id != ([2]uint64{}) {
		sub = append(ancestors[:len(ancestors):len(ancestors)], id)
	}
	for _, e := range entries {
		name := e.Name()
		child := joinFS(fsPath, name)
		childArch := joinArch(arch, name)
		if top && !emitSelf && w.skipTop[name] {
			continue
		}
		if containsPath(earlier, child) {
			w.issues.warn(childArch, "already emitted by an earlier selected path; skipped")
			continue
		}
		var cfi fs.FileInfo = listedFile{name}
		var err error
		if !w.listFiles || !e.Type().IsRegular() {
			cfi, err = d.lstat(name, child)
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				vanished(w.issues, w.cons, childArch, nil, err, msgVanished) // listed, then gone before its lstat
				continue
			}
			if err := w.issues.fail(childArch, fmt.Errorf("stat: %w", err)); err != nil {
				return err
			}
			continue
		}
		if w.fork != nil && cfi.IsDir() && w.fork.try(func() error {
			// The subtree is reached by its path: d may be closed before it is done.
			return w.visit(ctx, child, childArch, entryAt{}, cfi, true, false, earlier, sub, emit)
		}) {
			continue
		}
		if err := w.visit(ctx, child, childArch, entryAt{d, name}, cfi, true, false, earlier, sub, emit); err != nil {
			return err
		}
	}
	return nil
}

// joinFS is filepath.Join for a clean directory path and a name from its listing (no
// separators, never "." or ".."), without Join's cleaning: it runs for every entry.
func joinFS(dir, name string) string {
	if strings.HasSuffix(dir, string(filepath.Separator)) {
		return dir + name
	}
	return dir + string(filepath.Separator) + name
}

// linkError says why a symlink could not be followed (ENOENT or ELOOP), without the path (the
// issue names it).
func linkError(err error) string {
	if errors.Is(err, syscall.ELOOP) {
		return "too many levels of symbolic links"
	}
	return "dangling (its target does not exist)"
}

func containsPath(list []string, p string) bool {
	for _, e := range list {
		if e == p {
			return true
		}
	}
	return false
}

func describeMode(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "type " + m.Type().String()
}

// issueSample is one recorded warning or error.
type issueSample struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// maxSamples bounds the samples kept per list in events and summaries.
const maxSamples = 50

// fsIssues records the warnings and errors of a filesystem walk and applies the error policy.
type fsIssues struct {
	mu            sync.Mutex // a forked walk records from several goroutines
	policy        string
	WarningsTotal int64         `json:"warnings_total"`
	ErrorsTotal   int64         `json:"errors_total"`
	Warnings      []issueSample `json:"warnings"`
	Errors        []issueSample `json:"errors"`
}

func newFSIssues(policy string) *fsIssues {
	return &fsIssues{policy: policy, Warnings: []issueSample{}, Errors: []issueSample{}}
}

func (s *fsIssues) warn(p, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.WarningsTotal++
	if len(s.Warnings) < maxSamples {
		s.Warnings = append(s.Warnings, issueSample{Path: p, Message: msg})
	}
}

// fail records an error and returns it as the run's failure under fail_fast, nil otherwise.
func (s *fsIssues) fail(p string, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ErrorsTotal++
	if len(s.Errors) < maxSamples {
		s.Errors = append(s.Errors, issueSample{Path: p, Message: err.Error()})
	}
	if s.policy == jobspec.ErrorFailFast || s.policy == "" {
		return newErr(CodeFSIssues, KindSource, "A source file could not be read; fix it or choose the skip_fail or skip_ok error policy.",
			fmt.Errorf("%s: %w", displayPath(p), err))
	}
	return nil
}

func displayPath(p string) string {
	if p == "" {
		return "/"
	}
	return path.Clean(p)
}

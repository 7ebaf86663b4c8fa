//go:build unix

package backup

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileID is what identifies a file and its owner on unix, and its st_mode.
type fileID struct {
	Dev, Ino   uint64
	Nlink      uint64
	UID, GID   uint64
	Mode       uint32
	HasID      bool
	MtimeNanos int64
}

// statID reads fi's stat from os.Lstat and os.File.Stat (*syscall.Stat_t) or statInfo
// (*unix.Stat_t); HasID is false for a FileInfo that carries neither.
func statID(fi fs.FileInfo) fileID {
	id := fileID{MtimeNanos: fi.ModTime().UnixNano()}
	switch st := fi.Sys().(type) {
	case *syscall.Stat_t:
		id.Dev, id.Ino, id.Nlink = uint64(st.Dev), uint64(st.Ino), uint64(st.Nlink) //nolint:unconvert // widths differ per OS
		id.UID, id.GID, id.Mode = uint64(st.Uid), uint64(st.Gid), uint32(st.Mode)   //nolint:unconvert // widths differ per OS
		id.HasID = true
	case *unix.Stat_t:
		id.Dev, id.Ino, id.Nlink = uint64(st.Dev), uint64(st.Ino), uint64(st.Nlink) //nolint:unconvert // widths differ per OS
		id.UID, id.GID, id.Mode = uint64(st.Uid), uint64(st.Gid), uint32(st.Mode)   //nolint:unconvert // widths differ per OS
		id.HasID = true
	}
	return id
}

// readDir lists a directory, sorted by name, and returns it open: its children are stat'ed
// through it (lstatAt), one path component each instead of the whole path. The caller closes
// it. Each entry carries the type the listing gave (d_type; Go stats the entry itself on a
// filesystem that gives none). O_DIRECTORY fails on anything else and O_NONBLOCK keeps a FIFO
// swapped in since the Lstat from blocking the open. Unless follow is set (a legacy root that is
// a symlink to a directory), a symlink swapped in is not followed either.
func readDir(p string, follow bool) ([]fs.DirEntry, *os.File, error) {
	if openHook != nil {
		if err := openHook(p); err != nil {
			return nil, nil, err
		}
	}
	flags := os.O_RDONLY | syscall.O_DIRECTORY | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	if !follow {
		flags |= syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(p, flags, 0)
	if err != nil {
		return nil, nil, err
	}
	entries, err := f.ReadDir(-1)
	if err != nil {
		// Where the filesystem gives no entry types, Go stats every entry itself, and one stat
		// that fails fails the whole listing. Names alone then: the walk stats each entry, and
		// reports the one that fails, as it did before entries carried types.
		if names, nerr := relist(f); nerr == nil {
			entries, err = make([]fs.DirEntry, len(names)), nil
			for i, n := range names {
				entries[i] = untypedEntry(n)
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, f, nil
}

func relist(f *os.File) ([]string, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return f.Readdirnames(-1)
}

// untypedEntry is a listed name of unknown type: never taken for a regular file, so it is stat'ed.
type untypedEntry string

func (e untypedEntry) Name() string      { return string(e) }
func (e untypedEntry) IsDir() bool       { return false }
func (e untypedEntry) Type() fs.FileMode { return fs.ModeIrregular }
func (e untypedEntry) Info() (fs.FileInfo, error) {
	return nil, errors.New("untyped entry: not stat'ed")
}

// Test seams for fault injection. Only export_test.go sets them, so in production each file
// costs one nil check and nothing else.
var (
	// openHook runs before a file or directory is opened or a symlink read; an error it
	// returns replaces that call's result.
	openHook func(fsPath string) error
	// afterCopyHook runs right after a file's body was archived, before the consistency check.
	afterCopyHook func(fsPath string)
	// drainedHook gets what the read-ahead queue still counts once it is empty (queued bytes and
	// large buffers): 0 unless its bookkeeping is wrong.
	drainedHook func(queuedBytes int64)
)

func readLink(p string) (string, error) {
	if openHook != nil {
		if err := openHook(p); err != nil {
			return "", err
		}
	}
	return os.Readlink(p)
}

var errNotRegular = errors.New("no longer a regular file")

// notRegularError is errNotRegular with what the object turned out to be ("fifo", …).
type notRegularError struct{ kind string }

func (e *notRegularError) Error() string { return errNotRegular.Error() + " (" + e.kind + ")" }
func (e *notRegularError) Unwrap() error { return errNotRegular }

// srcFile is an open source file: read once, from start to end, then closed.
type srcFile interface {
	io.Reader
	io.Closer
	Stat() (fs.FileInfo, error)
}

// openDir is a directory the walk listed, held open while its entries are stat'ed and, by
// read-ahead workers, opened relative to it: the kernel then resolves one name per call instead
// of the whole path. It is closed when the last reference is released, never while a worker may
// still use its descriptor (a descriptor number reused for another directory would read the
// wrong files).
type openDir struct {
	f    *os.File
	fd   int
	refs atomic.Int32
}

// newOpenDir takes over f with one reference, the walker's.
func newOpenDir(f *os.File) *openDir {
	d := &openDir{f: f, fd: int(f.Fd())}
	d.refs.Store(1)
	return d
}

func (d *openDir) acquire() { d.refs.Add(1) }

func (d *openDir) release() {
	if d.refs.Add(-1) == 0 {
		d.f.Close()
	}
}

// openRegular opens it.fsPath for reading without following a symlink (unless it.follow is set:
// a link archived as its target under symlink_policy follow) and without blocking on a FIFO,
// and checks through the handle that it is a regular file. With it.at set it opens relative to
// the directory.
func openRegular(it item) (srcFile, fs.FileInfo, error) {
	p, follow := it.fsPath, it.follow
	if openHook != nil {
		if err := openHook(p); err != nil {
			return nil, nil, err
		}
	}
	f, err := openSource(it.at, p, follow)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat open file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, &notRegularError{describeMode(fi.Mode())}
	}
	// Regular files ignore O_NONBLOCK for reads, so reads stay plain blocking reads.
	return f, fi, nil
}

package backup

import (
	"io"
	"io/fs"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// rawFile is a source file read through its descriptor alone. os.OpenFile would also register
// it with the runtime's poller (an fcntl and an epoll_ctl that fails for regular files): three
// system calls per file that tar does not make, and with many small files they add up.
type rawFile struct {
	fd   int
	name string
}

// openSource opens p read-only and non-blocking; with O_NOFOLLOW unless follow is set; relative
// to at.dir when it is set (p is at.dir's path joined with at.name).
func openSource(at entryAt, p string, follow bool) (srcFile, error) {
	flags := syscall.O_RDONLY | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	if !follow {
		flags |= syscall.O_NOFOLLOW
	}
	dirfd, name := unix.AT_FDCWD, p
	if at.dir != nil {
		dirfd, name = at.dir.fd, at.name
	}
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, name, flags, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return &rawFile{fd: fd, name: p}, nil
}

func (f *rawFile) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	err := ignoringEINTR(func() (err error) {
		n, err = syscall.Read(f.fd, b)
		return err
	})
	switch {
	case err != nil:
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: err}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (f *rawFile) Stat() (fs.FileInfo, error) {
	st := &statInfo{name: f.name}
	if err := ignoringEINTR(func() error { return unix.Fstat(f.fd, &st.sys) }); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: f.name, Err: err}
	}
	return st, nil
}

func (f *rawFile) Close() error {
	if f.fd < 0 {
		return nil
	}
	err := syscall.Close(f.fd)
	f.fd = -1
	return err
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != syscall.EINTR {
			return err
		}
	}
}

// statInfo is an fs.FileInfo from fstat or fstatat; Sys returns the *unix.Stat_t.
type statInfo struct {
	name string
	sys  unix.Stat_t
}

func (s *statInfo) Name() string       { return s.name }
func (s *statInfo) Size() int64        { return s.sys.Size }
func (s *statInfo) ModTime() time.Time { return time.Unix(s.sys.Mtim.Unix()) }
func (s *statInfo) IsDir() bool        { return s.Mode().IsDir() }
func (s *statInfo) Sys() any           { return &s.sys }

// Mode converts the unix mode bits the way os.Stat does.
func (s *statInfo) Mode() fs.FileMode {
	m := fs.FileMode(s.sys.Mode & 0o777)
	switch s.sys.Mode & syscall.S_IFMT {
	case syscall.S_IFBLK:
		m |= fs.ModeDevice
	case syscall.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if s.sys.Mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if s.sys.Mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if s.sys.Mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// lstat is os.Lstat of full, the directory's path joined with name, made relative to the
// directory (fstatat) and without os.Lstat's allocations.
func (d *openDir) lstat(name, full string) (fs.FileInfo, error) {
	return statAt(entryAt{d, name}, full, false)
}

// statAt stats p, relative to at.dir when it is set; following a last symlink only if follow
// is set.
func statAt(at entryAt, p string, follow bool) (fs.FileInfo, error) {
	dirfd, name := unix.AT_FDCWD, p
	if at.dir != nil {
		dirfd, name = at.dir.fd, at.name
	}
	flags := unix.AT_SYMLINK_NOFOLLOW
	if follow {
		flags = 0
	}
	st := &statInfo{name: name}
	err := ignoringEINTR(func() error { return unix.Fstatat(dirfd, name, &st.sys, flags) })
	if err != nil {
		op := "lstat"
		if follow {
			op = "stat"
		}
		return nil, &fs.PathError{Op: op, Path: p, Err: err}
	}
	return st, nil
}

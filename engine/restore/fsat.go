package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// destDir is the restore destination held open as a directory descriptor. Every path below it
// is reached one component at a time with openat(O_NOFOLLOW|O_DIRECTORY), and every change is
// made relative to the descriptor of the parent directory with the *at calls that do not
// follow a symlink in the last component (fstatat/utimensat with AT_SYMLINK_NOFOLLOW, fchmod on
// a descriptor opened O_NOFOLLOW, renameat, unlinkat, symlinkat, linkat without
// AT_SYMLINK_FOLLOW). So neither a symlink the archive planted nor one that someone with
// access to the destination swaps in between a check and a use can send a write, a chmod or a
// chtimes outside the destination.
type destDir struct {
	fd   int
	path string

	// The last parent opened, kept because tar entries come grouped by directory. Anything
	// that removes a path below dest drops it: a removed directory must not be written into.
	lastRel string
	lastFd  int
}

func openDestDir(path string) (*destDir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &destDir{fd: fd, path: path, lastFd: -1}, nil
}

// realPath is where the opened destination really is: the kernel's name for its descriptor on
// Linux, else the destination's path with its symlinks resolved now.
func (d *destDir) realPath() (string, error) {
	if p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", d.fd)); err == nil && filepath.IsAbs(p) {
		return p, nil
	}
	return filepath.EvalSymlinks(d.path)
}

func (d *destDir) Close() error {
	d.forget()
	return unix.Close(d.fd)
}

// forget closes the cached parent.
func (d *destDir) forget() {
	if d.lastFd >= 0 {
		unix.Close(d.lastFd)
	}
	d.lastRel, d.lastFd = "", -1
}

// errMissing is a parent that does not exist where it was not to be created.
var errMissing = errors.New("does not exist")

// parent opens the directory that holds rel (a cleanName result) and returns its descriptor
// (owned by d: valid until the next call to parent or forget) and rel's last component. With
// create, missing parents are made (0755). why is set, and nothing is changed, when a
// parent is a symlink or not a directory; err wraps errMissing when a parent is missing
// and create is false.
func (d *destDir) parent(rel string, create bool) (fd int, base, why string, err error) {
	dir, base := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, base = rel[:i], rel[i+1:]
	}
	if dir == "" {
		return d.fd, base, "", nil
	}
	if d.lastFd >= 0 && d.lastRel == dir {
		return d.lastFd, base, "", nil
	}
	d.forget()
	cur := d.fd
	closeCur := func() {
		if cur != d.fd {
			unix.Close(cur)
		}
	}
	segs := strings.Split(dir, "/")
	for i, s := range segs {
		next, err := openDirAt(cur, s)
		if errors.Is(err, unix.ENOENT) && create {
			if err := unix.Mkdirat(cur, s, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				closeCur()
				return -1, "", "", fmt.Errorf("create directory %s: %w", strings.Join(segs[:i+1], "/"), err)
			}
			next, err = openDirAt(cur, s)
		}
		if err != nil {
			name := strings.Join(segs[:i+1], "/")
			why, err := classifyAt(cur, s, err)
			closeCur()
			if why != "" {
				return -1, "", "parent " + name + " " + why, nil
			}
			return -1, "", "", fmt.Errorf("open parent %s: %w", name, err)
		}
		closeCur()
		cur = next
	}
	d.lastRel, d.lastFd = dir, cur
	return cur, base, "", nil
}

func openDirAt(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return fd, err
	}
}

// classifyAt turns the failure to open name below dirfd as a directory into a refusal ("is a
// symlink", "is not a directory") or an error (errMissing, or the open's own).
func classifyAt(dirfd int, name string, openErr error) (why string, err error) {
	var st unix.Stat_t
	if serr := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); serr != nil {
		if errors.Is(serr, unix.ENOENT) {
			return "", errMissing
		}
		return "", openErr
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return "is a symlink", nil
	case unix.S_IFDIR:
		return "", openErr // a directory we may not open (permissions)
	}
	return "is not a directory", nil
}

// lstatAt describes name below dirfd without following it; exists is false when there is
// nothing there.
func lstatAt(dirfd int, name string) (mode uint32, exists bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, false, nil
		}
		return 0, false, err
	}
	return uint32(st.Mode) & unix.S_IFMT, true, nil
}

// remove unlinks rel, which is name below dirfd (a directory only if it is empty).
func (d *destDir) remove(dirfd int, name, rel string, isDir bool) error {
	flags := 0
	if isDir {
		flags = unix.AT_REMOVEDIR
	}
	err := unix.Unlinkat(dirfd, name, flags)
	if err == nil && isDir && d.lastRel == rel {
		// The cached parent is the directory just removed (it was empty, so nothing below it
		// can be cached); nothing more may be written into it.
		d.forget()
	}
	return err
}

// createTemp makes an empty file beside name below dirfd, opened for writing; O_EXCL and
// O_NOFOLLOW so it is always a new file of ours.
func createTemp(dirfd int) (*os.File, string, error) {
	for range 10 {
		name := ".bastion-restore-" + strconv.FormatUint(rand.Uint64(), 36)
		fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		return os.NewFile(uintptr(fd), name), name, nil
	}
	return nil, "", errors.New("no free temporary name")
}

func setTimesAt(dirfd int, name string, mtime time.Time) error {
	ts := unix.NsecToTimespec(mtime.UnixNano())
	return unix.UtimesNanoAt(dirfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// chmodDirAt sets the mode of the directory name below dirfd through a descriptor opened
// O_NOFOLLOW|O_DIRECTORY, so a symlink there is never followed. why is set when name is no
// longer a directory.
func chmodDirAt(dirfd int, name string, mode uint32) (why string, err error) {
	fd, err := openDirAt(dirfd, name)
	if err != nil {
		why, cerr := classifyAt(dirfd, name, err)
		if why != "" || !errors.Is(cerr, unix.EACCES) {
			if errors.Is(cerr, errMissing) {
				return "is gone", nil
			}
			return why, cerr
		}
		// A directory we cannot open for reading (not root, mode without r): fchmodat2 with
		// AT_SYMLINK_NOFOLLOW still acts on it alone, where the kernel has it (6.6+).
		if err := unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return "", fmt.Errorf("chmod without following symlinks: %w", err)
		}
		return "", nil
	}
	defer unix.Close(fd)
	return "", unix.Fchmod(fd, mode)
}

// unixMode turns a tar header mode into chmod bits: permissions, plus setuid, setgid and
// sticky only when keep is set.
func unixMode(hdrMode int64, keep bool) uint32 {
	mask := int64(fs.ModePerm)
	if keep {
		mask = 0o7777
	}
	return uint32(hdrMode & mask)
}

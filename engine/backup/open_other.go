//go:build unix && !linux

package backup

import (
	"io/fs"
	"os"
	"syscall"
)

// openSource opens p read-only and non-blocking; with O_NOFOLLOW unless follow is set. The
// *at calls are left to Linux: at is not used.
func openSource(_ entryAt, p string, follow bool) (srcFile, error) {
	flags := os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	if !follow {
		flags |= syscall.O_NOFOLLOW
	}
	return os.OpenFile(p, flags, 0)
}

func (d *openDir) lstat(_, full string) (fs.FileInfo, error) { return os.Lstat(full) }

// statAt stats p by its path (the *at calls are left to Linux).
func statAt(_ entryAt, p string, follow bool) (fs.FileInfo, error) {
	if follow {
		return os.Stat(p)
	}
	return os.Lstat(p)
}

//go:build unix && !linux

package backup

import (
	"io/fs"
	"os"
	"syscall"
)

// openSource opens p read-only and non-blocking; with O_NOFOLLOW unless follow is set.
func openSource(p string, follow bool) (srcFile, error) {
	flags := os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	if !follow {
		flags |= syscall.O_NOFOLLOW
	}
	return os.OpenFile(p, flags, 0)
}

// statDir stats a directory's entries by their full path: fstatat is left to Linux.
type statDir struct{}

func newStatDir(*os.File) statDir { return statDir{} }

func (statDir) lstat(_, full string) (fs.FileInfo, error) { return os.Lstat(full) }

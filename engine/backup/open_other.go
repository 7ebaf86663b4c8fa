//go:build unix && !linux

package backup

import (
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

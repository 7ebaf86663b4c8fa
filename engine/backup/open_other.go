//go:build unix && !linux

package backup

import (
	"os"
	"syscall"
)

func openNoFollow(p string) (srcFile, error) {
	return os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
}

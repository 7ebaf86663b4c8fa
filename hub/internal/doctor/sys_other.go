//go:build !(linux || darwin || freebsd)

package doctor

import (
	"errors"
	"io/fs"
)

func diskUsage(string) (uint64, uint64, error) {
	return 0, 0, errors.New("not supported on this system")
}

func ownerUID(fs.FileInfo) (int, bool) { return 0, false }

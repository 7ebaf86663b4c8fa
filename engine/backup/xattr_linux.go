package backup

import (
	"encoding/base64"
	"errors"
	"strings"

	"golang.org/x/sys/unix"
)

// maxXattrBytes bounds one attribute value read for the index (Linux allows at most 64 KiB).
const maxXattrBytes = 64 << 10

// readXattrs returns the extended attributes of p as name → base64 of the value (the raw tree
// index format), or nil when there are none or they cannot be read: they are best effort, as in
// the original. follow reads those of a symlink's target (symlink_policy follow).
func readXattrs(p string, follow bool) map[string]string {
	list, get := unix.Llistxattr, unix.Lgetxattr
	if follow {
		list, get = unix.Listxattr, unix.Getxattr
	}
	buf := make([]byte, 4096)
	n, err := list(p, buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = list(p, nil); err == nil {
			buf = make([]byte, n)
			n, err = list(p, buf)
		}
	}
	if err != nil || n <= 0 {
		return nil
	}
	out := map[string]string{}
	val := make([]byte, maxXattrBytes)
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		m, err := get(p, name, val)
		if err != nil {
			continue
		}
		out[name] = base64.StdEncoding.EncodeToString(val[:m])
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

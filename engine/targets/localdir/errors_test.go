package localdir

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"github.com/bastion-backup/bastion/engine/targets"
)

// As root the permission and quota paths cannot be provoked for real; the mapping is checked here.
func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		kind string
	}{
		{&fs.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}, targets.KindPermission},
		{&fs.PathError{Op: "open", Path: "/x", Err: syscall.EROFS}, targets.KindPermission},
		{fmt.Errorf("write: %w", &fs.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}), targets.KindStorageFull},
		{&fs.PathError{Op: "write", Path: "/x", Err: syscall.EDQUOT}, targets.KindStorageFull},
		{&fs.PathError{Op: "stat", Path: "/x", Err: syscall.ENOENT}, targets.KindNotFound},
		{&fs.PathError{Op: "open", Path: "/x", Err: syscall.ELOOP}, targets.KindConfig},
		{&fs.PathError{Op: "write", Path: "/x", Err: syscall.EIO}, targets.KindIO},
	} {
		e := classify("put x", tc.err)
		if e.Kind != tc.kind || e.Code != "local_dir_"+tc.kind || e.Hint == "" || !errors.Is(e, tc.err) {
			t.Errorf("classify(%v) = %+v, want kind %s with code and hint", tc.err, e, tc.kind)
		}
	}
}

package localdir

import (
	"errors"
	"io/fs"
	"syscall"

	"github.com/bastion-backup/bastion/engine/targets"
)

// code is the stable error code of a kind: local_dir_<kind>.
func code(kind string) string { return "local_dir_" + kind }

var hints = map[string]string{
	targets.KindPermission:  "Bastion may not write to the backup directory; give the user running the node write access to base_dir.",
	targets.KindStorageFull: "The disk holding the backup directory is full; free space or lower retention.",
	targets.KindConfig:      "Check the job's local directory target: base_dir must be an absolute path to a directory used only for Bastion backups.",
	targets.KindIntegrity:   "The file written does not have the expected size; check the disk and run the backup again.",
	targets.KindNotFound:    "The file is missing from the backup directory; the snapshot may have been deleted or moved.",
	targets.KindIO:          "Reading or writing the backup directory failed; check the disk and the system log.",
}

func hint(kind string) string { return hints[kind] }

func newErr(kind, op string, err error) *targets.Error {
	return &targets.Error{Kind: kind, Code: code(kind), Hint: hint(kind), Op: op, Err: err}
}

func configErr(op string, err error) *targets.Error { return newErr(targets.KindConfig, op, err) }

// classify maps a file-system error to a kind: EACCES/EPERM/EROFS → permission,
// ENOSPC/EDQUOT → storage_full, missing → not_found (matching targets.ErrNotExist),
// a bad path → config, anything else → io.
func classify(op string, err error) *targets.Error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return newErr(targets.KindNotFound, op, notExist{err})
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EROFS):
		return newErr(targets.KindPermission, op, err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return newErr(targets.KindStorageFull, op, err)
	case errors.Is(err, targets.ErrInvalidPath), errors.Is(err, errSymlink),
		errors.Is(err, syscall.ELOOP), errors.Is(err, syscall.ENOTDIR):
		return newErr(targets.KindConfig, op, err)
	}
	return newErr(targets.KindIO, op, err)
}

// notExist keeps the file-system error's text and makes it match targets.ErrNotExist as well as
// fs.ErrNotExist.
type notExist struct{ err error }

func (e notExist) Error() string   { return e.err.Error() }
func (e notExist) Unwrap() []error { return []error{e.err, targets.ErrNotExist} }

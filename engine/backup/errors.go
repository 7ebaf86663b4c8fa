package backup

import (
	"context"
	"errors"

	"github.com/bastion-backup/bastion/engine/targets"
)

// Error codes: the run's stable `error` column. Target failures keep the target's own code
// (webdav_auth, local_dir_io, ...).
const (
	CodeInvalidSpec       = "invalid_spec"
	CodeCanceled          = "canceled"
	CodeFSIssues          = "fs_issues"
	CodeSourceConsistency = "source_consistency"
	CodeIntegrityCheck    = "integrity_check"
	CodeSourceIO          = "source_io"
	CodeSQLiteSnapshot    = "sqlite_snapshot"
	CodeEncryptionKey     = "encryption_key"
	CodeStagingIO         = "staging_io"
	CodeUpload            = "upload_failed"
)

// Error kinds beyond the target kinds of package targets.
const (
	KindSource   = "source"
	KindConfig   = targets.KindConfig
	KindIO       = targets.KindIO
	KindCanceled = "canceled"
)

// Error is a classified backup failure. Code is stable (see the Code* constants and the
// targets' codes), Kind groups codes for retry policies, Hint is one sentence for the UI,
// Retriable says whether running the job again soon may succeed.
type Error struct {
	Code      string
	Kind      string
	Hint      string
	Retriable bool
	Err       error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Code
	}
	return e.Code + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func newErr(code, kind, hint string, err error) *Error {
	return &Error{Code: code, Kind: kind, Hint: hint, Err: err}
}

// classify turns any error into an *Error: typed errors pass through, target errors keep their
// code and kind, a canceled context becomes "canceled".
func classify(ctx context.Context, err error) *Error {
	if err == nil {
		return nil
	}
	var be *Error
	if errors.As(err, &be) {
		return be
	}
	var te *targets.Error
	if errors.As(err, &te) {
		return &Error{Code: te.Code, Kind: te.Kind, Hint: te.Hint, Retriable: targets.Retriable(te.Kind), Err: err}
	}
	if errors.Is(err, context.Canceled) || (ctx != nil && ctx.Err() != nil && errors.Is(err, ctx.Err())) {
		return &Error{Code: CodeCanceled, Kind: KindCanceled, Hint: "The run was canceled.", Err: err}
	}
	return &Error{Code: CodeStagingIO, Kind: KindIO, Hint: "Check free space and permissions of the data directory.", Err: err}
}

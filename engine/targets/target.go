// Package targets is where backups are stored: one interface, implemented by one driver package
// each (localdir: a directory on the node that runs the job; webdav), listed in
// engine/targets/all, and checked by one conformance suite (targettest) that runs against all.
//
// A run's files live under <base>/<job_id>/<run_id>/: payload.partNNNNNN, entries.jsonl.zst,
// manifest.json, and complete.json, which is always written last and whose presence means the
// snapshot is complete.
package targets

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Well-known file names of a run directory.
const (
	ManifestName = "manifest.json"
	EntriesName  = "entries.jsonl.zst"
	CompleteName = "complete.json"
)

// RunRef names a run directory on a target.
type RunRef struct {
	JobID string
	RunID string
}

// Target stores and reads the files of backup runs.
type Target interface {
	// Type is the driver's type ("local_dir", "webdav").
	Type() string

	// Put stores exactly size bytes from body as run/name, creating the run directory as needed.
	// When a file of that name already has the same size it is kept and Put reports skipped
	// (resume by size; manifest.json and complete.json are always rewritten). body is seeked back
	// to its start before each retry. A partially written file never appears under name.
	Put(ctx context.Context, run RunRef, name string, body io.ReadSeeker, size int64) (skipped bool, err error)

	// Size returns the size of run/name, or an error matching ErrNotExist.
	Size(ctx context.Context, run RunRef, name string) (int64, error)

	// Open streams run/name. The caller checks the length it reads against what it expects.
	Open(ctx context.Context, run RunRef, name string) (io.ReadCloser, error)

	// CleanupRun removes what an incomplete run left behind. It never deletes a run whose
	// complete.json exists (CleanupSkipComplete), and for local directories only one that looks
	// like a Bastion run.
	CleanupRun(ctx context.Context, run RunRef) (CleanupResult, error)

	// DeleteRun removes a whole run directory, complete or not (snapshot deletion).
	DeleteRun(ctx context.Context, run RunRef) (DeleteResult, error)

	// Location is where a run lives, for run summaries and logs: a local path (run_dir) or a URL
	// without credentials (run_url).
	Location(run RunRef) string

	// Redacted describes the target for storage with the run: no credentials, no userinfo,
	// query or fragment in URLs.
	Redacted() Redacted
}

// CleanupResult is the outcome of CleanupRun.
type CleanupResult string

const (
	CleanupDeleted      CleanupResult = "deleted"
	CleanupSkipComplete CleanupResult = "skip_complete"
	CleanupSkipNotFound CleanupResult = "skip_not_found"
)

// DeleteResult is the outcome of DeleteRun.
type DeleteResult string

const (
	DeleteDeleted  DeleteResult = "deleted"
	DeleteNotFound DeleteResult = "not_found"
)

// Redacted is the JSON stored as a run's target snapshot: the driver's own target object
// without credentials, always with "type" and, for a driver that reads a secret, "secret_name"
// ({type, base_dir} and {type, base_url, secret_name} for the built-in ones). It keeps the exact
// bytes it was made or read from, so a stored snapshot is written back unchanged.
type Redacted struct {
	// Type and SecretName are read from the JSON; set them only through NewRedacted.
	Type       string
	SecretName string
	raw        json.RawMessage
}

// NewRedacted marshals a driver's redacted target object (which must have "type").
func NewRedacted(v any) Redacted {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("targets: marshal redacted target: %v", err)) // drivers pass plain structs
	}
	var r Redacted
	if err := r.UnmarshalJSON(b); err != nil {
		panic(fmt.Sprintf("targets: redacted target: %v", err))
	}
	return r
}

// JSON is the stored description.
func (r Redacted) JSON() json.RawMessage {
	if len(r.raw) == 0 {
		b, _ := json.Marshal(struct {
			Type       string `json:"type"`
			SecretName string `json:"secret_name,omitempty"`
		}{r.Type, r.SecretName})
		return b
	}
	return r.raw
}

func (r Redacted) MarshalJSON() ([]byte, error) { return r.JSON(), nil }

func (r *Redacted) UnmarshalJSON(b []byte) error {
	var head struct {
		Type       string `json:"type"`
		SecretName string `json:"secret_name"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("decode target description: %w", err)
	}
	*r = Redacted{Type: head.Type, SecretName: head.SecretName, raw: append(json.RawMessage(nil), b...)}
	return nil
}

// ErrNotExist is matched (errors.Is) by the error of Size and Open for a missing file.
var ErrNotExist = errors.New("target file does not exist")

// Error kinds: stable classifications a UI can show and a retry policy can act on.
const (
	KindAuth                = "auth"                 // 401
	KindPermission          = "permission"           // 403, EACCES
	KindPayloadTooLarge     = "payload_too_large"    // 413
	KindStorageFull         = "storage_full"         // 507, ENOSPC
	KindConfig              = "config"               // 404/409/412 on a collection, bad base URL or path
	KindRateLimited         = "rate_limited"         // 429
	KindTimeout             = "timeout"              // 408, 504, deadline
	KindUpstreamUnavailable = "upstream_unavailable" // 502, 503, other 5xx
	KindNetwork             = "network"              // connection refused/reset, DNS
	KindIntegrity           = "integrity"            // size or hash mismatch
	KindNotFound            = "not_found"            // the file asked for is absent (matches ErrNotExist)
	KindIO                  = "io"                   // local I/O
	KindUnknown             = "unknown"
)

// StatusKind classifies an HTTP status that is not a success, for the drivers that speak HTTP
// (WebDAV, S3), so that the same answer means the same kind whichever server gave it.
func StatusKind(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return KindAuth
	case status == http.StatusForbidden:
		return KindPermission
	case status == http.StatusRequestEntityTooLarge:
		return KindPayloadTooLarge
	case status == http.StatusInsufficientStorage:
		return KindStorageFull
	case status == http.StatusNotFound, status == http.StatusConflict, status == http.StatusPreconditionFailed:
		return KindConfig
	case status == http.StatusTooManyRequests:
		return KindRateLimited
	case status == http.StatusRequestTimeout, status == http.StatusGatewayTimeout:
		return KindTimeout
	case status >= 500:
		return KindUpstreamUnavailable
	case status >= 300 && status < 400:
		// Redirects are not followed (a redirected PUT would become a GET): the URL is off.
		return KindConfig
	}
	return KindUnknown
}

// TransportKind classifies a request that got no answer from the server (a transport error) and
// returns the error to report with it. A *url.Error is unwrapped: its text repeats the URL and
// the op already says what was done. A refused TLS certificate is a configuration problem, a
// transport timeout a timeout, anything else the network.
func TransportKind(err error) (kind string, reported error) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &invalidCert):
		return KindConfig, fmt.Errorf("TLS certificate not accepted: %w", err)
	case errors.As(err, &ne) && ne.Timeout():
		return KindTimeout, err
	}
	return KindNetwork, err
}

// Error is a classified target failure. Code is stable (e.g. "webdav_auth", "local_dir_io"),
// Hint is one sentence the UI can show, HTTPStatus is set for WebDAV answers.
type Error struct {
	Kind       string
	Code       string
	Hint       string
	HTTPStatus int
	Op         string // "put payload.part000001", "mkcol <job>/<run>"
	Attempts   int
	// RetryAfter is how long the server asked to wait before trying again (429/503
	// Retry-After), or 0; engine/targets/retrying waits that long instead of its backoff.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	msg := e.Op + ": " + e.Code
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Retriable reports whether the kind is worth retrying later (network-ish failures).
func Retriable(kind string) bool {
	switch kind {
	case KindRateLimited, KindTimeout, KindUpstreamUnavailable, KindNetwork:
		return true
	}
	return false
}

// KindOf returns the kind of a target error, or KindUnknown.
func KindOf(err error) string {
	var te *Error
	if errors.As(err, &te) {
		return te.Kind
	}
	return KindUnknown
}

// ErrInvalidPath is matched by the error of an operation given a job id, run id or file name
// that could not safely name a path below the target's base.
var ErrInvalidPath = errors.New("invalid target path")

// MaxIDLen and MaxNameLen bound ids and file names, well inside file-system name limits even with
// the ".partial" suffix local writes add.
const (
	MaxIDLen   = 128
	MaxNameLen = 200
)

// PartialSuffix marks a file being written; such names are reserved for the targets themselves.
const PartialSuffix = ".partial"

// ValidateRun checks that both ids are UUID-like ([A-Za-z0-9_-]+): they become path segments,
// so anything that could climb out of the base directory or be re-encoded differently by a
// server is refused.
func ValidateRun(run RunRef) error {
	if err := validateID("job id", run.JobID); err != nil {
		return err
	}
	return validateID("run id", run.RunID)
}

func validateID(what, id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%s must be 1 to %d characters: %w", what, MaxIDLen, ErrInvalidPath)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%s %q may hold only letters, digits, '-' and '_': %w", what, id, ErrInvalidPath)
		}
	}
	return nil
}

// DataDir is the directory of a raw_tree_v1 run that holds the file bodies:
// data/<archive path>. It is the only name of a run directory with levels below it.
const DataDir = "data"

// MaxDataPathLen bounds a whole data/<archive path> name; MaxDataSegmentLen bounds each of its
// segments (the usual file-system name limit).
const (
	MaxDataPathLen    = 4096
	MaxDataSegmentLen = 255
)

// DataName is the target name of the body of the raw_tree_v1 file at archive path p.
func DataName(p string) string { return DataDir + "/" + p }

// ValidateName checks a file name within a run directory: either a single path element of
// valid UTF-8 without separators, control characters or the reserved ".partial" suffix, and not
// "." or ".."; or a raw_tree_v1 body, "data/" followed by one or more such elements joined by
// "/" (these may end in ".partial": they are a source's own file names, and drivers that write
// through a temporary name use another scheme below data/).
func ValidateName(name string) error {
	rest, ok := strings.CutPrefix(name, DataDir+"/")
	if !ok {
		if name == DataDir {
			return fmt.Errorf("file name %q is the raw tree's directory: %w", name, ErrInvalidPath)
		}
		return validateElem(name, MaxNameLen, false)
	}
	if len(name) > MaxDataPathLen {
		return fmt.Errorf("data file name must be at most %d bytes: %w", MaxDataPathLen, ErrInvalidPath)
	}
	for _, seg := range strings.Split(rest, "/") {
		if err := validateElem(seg, MaxDataSegmentLen, true); err != nil {
			return err
		}
	}
	return nil
}

func validateElem(name string, maxLen int, partialOK bool) error {
	switch {
	case name == "" || len(name) > maxLen:
		return fmt.Errorf("file name must be 1 to %d bytes: %w", maxLen, ErrInvalidPath)
	case name == "." || name == "..":
		return fmt.Errorf("file name %q is not allowed: %w", name, ErrInvalidPath)
	case !utf8.ValidString(name):
		return fmt.Errorf("file name is not valid UTF-8: %w", ErrInvalidPath)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("file name %q must not contain a path separator: %w", name, ErrInvalidPath)
	case !partialOK && strings.HasSuffix(name, PartialSuffix):
		return fmt.Errorf("file name %q uses the reserved suffix %s: %w", name, PartialSuffix, ErrInvalidPath)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("file name %q must not contain control characters: %w", name, ErrInvalidPath)
		}
	}
	return nil
}

// AlwaysRewrite reports whether name is one of the metadata files Put never skips by size:
// their content changes between attempts while their size may not.
func AlwaysRewrite(name string) bool {
	return name == ManifestName || name == CompleteName
}

// RunTarget is the JSON stored with a run (runs.target_snapshot_json) and a snapshot
// (run_artifacts.target_snapshot_json): which node wrote it, and where, without credentials.
type RunTarget struct {
	NodeID string   `json:"node_id"`
	Target Redacted `json:"target"`
}

package webdav

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bastion-backup/bastion/engine/targets"
)

// Code is the stable error code of a kind: webdav_<kind>.
func Code(kind string) string { return "webdav_" + kind }

// Hint is the sentence the UI shows for a kind.
func Hint(kind string) string { return hints[kind] }

var hints = map[string]string{
	targets.KindAuth:                "Check the WebDAV username and password in Settings → WebDAV credentials.",
	targets.KindPermission:          "The WebDAV account may not write here; grant it write access to the base URL on the server.",
	targets.KindPayloadTooLarge:     "The server refused a file this large; lower the job's part size or raise the server's upload limit.",
	targets.KindStorageFull:         "The WebDAV storage is full or over quota; free space or lower retention.",
	targets.KindConfig:              "Check the job's WebDAV base URL: the server did not accept this path.",
	targets.KindRateLimited:         "The server is throttling requests; lower the job's WebDAV request rates or concurrency.",
	targets.KindTimeout:             "The server stopped answering in time; check its load or raise the request timeout.",
	targets.KindUpstreamUnavailable: "The WebDAV server or a proxy in front of it is unavailable; Bastion will retry later.",
	targets.KindNetwork:             "Could not reach the WebDAV server; check the base URL, DNS and the network.",
	targets.KindIntegrity:           "The data sent or received does not have the expected size; run the backup again.",
	targets.KindNotFound:            "The file is missing on the WebDAV server; the snapshot may have been deleted there.",
	targets.KindIO:                  "Reading the local file to upload failed; check the node's disk.",
	targets.KindUnknown:             "The WebDAV server gave an unexpected answer; see the error details.",
}

func newErr(kind, op string, status int, err error) *targets.Error {
	return &targets.Error{Kind: kind, Code: Code(kind), Hint: Hint(kind), HTTPStatus: status, Op: op, Err: err}
}

func statusErr(op string, resp *http.Response) *targets.Error {
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		err := fmt.Errorf("server answered %d %s (redirects are not followed; check the base URL)", resp.StatusCode, http.StatusText(resp.StatusCode))
		return newErr(targets.StatusKind(resp.StatusCode), op, resp.StatusCode, err)
	}
	return statusCodeErr(op, resp.StatusCode)
}

// statusCodeErr is the error of an answer the caller did not expect, by its status alone.
func statusCodeErr(op string, status int) *targets.Error {
	return newErr(targets.StatusKind(status), op, status, fmt.Errorf("server answered %d %s", status, http.StatusText(status)))
}

func notFoundErr(op string, status int) *targets.Error {
	return newErr(targets.KindNotFound, op, status, fmt.Errorf("server answered %d %s: %w", status, http.StatusText(status), targets.ErrNotExist))
}

// errStalled is the cancel cause of a request that made no progress for the request timeout.
var errStalled = errors.New("no progress within the request timeout")

// errShortBody is returned to the transport when the body ends before the declared size.
var errShortBody = errors.New("request body ended before its declared size")

// transportErr classifies an error from sending a request or reading its response. A canceled
// caller context is returned as is (wrapped), never as a target error: it is not a failure of
// the target and must not be retried.
func transportErr(ctx, rctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, context.Cause(ctx))
	}
	kind, err := targets.TransportKind(err)
	if rctx != nil && errors.Is(context.Cause(rctx), errStalled) {
		// The transport saw the stall as a cancellation: a network error by kind, a timeout in fact.
		return newErr(targets.KindTimeout, op, 0, fmt.Errorf("%w (%w)", errStalled, err))
	}
	return newErr(kind, op, 0, err)
}

// Backoff is the wait before attempt n+1 after attempt n failed: 1 s doubling, capped at 30 s.
func Backoff(attempt int) time.Duration {
	d := time.Second
	for i := 1; i < attempt && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// maxRetryAfter caps what a server may ask us to wait.
const maxRetryAfter = 60 * time.Second

// ParseRetryAfter reads a Retry-After header (delta-seconds or HTTP-date, relative to now) and
// caps it at 60 s. ok is false when the header is absent or malformed.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(at.Sub(now), 0), maxRetryAfter), true
}

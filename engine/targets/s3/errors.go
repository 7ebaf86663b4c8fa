package s3

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"github.com/bastion-backup/bastion/engine/targets"
)

// Code is the stable error code of a kind: s3_<kind>.
func Code(kind string) string { return "s3_" + kind }

// Hint is the sentence the UI shows for a kind.
func Hint(kind string) string { return hints[kind] }

var hints = map[string]string{
	targets.KindAuth:                "Check the S3 access key and secret in Settings → Secrets, and that the key may read and write this bucket.",
	targets.KindPermission:          "The S3 key may not do this here; grant it read, write, list and delete on the bucket and prefix.",
	targets.KindPayloadTooLarge:     "The S3 service refused an object or part this large; lower the target's part_size_bytes.",
	targets.KindStorageFull:         "The S3 bucket or account is over its quota; free space or lower retention.",
	targets.KindConfig:              "Check the job's S3 endpoint, region, bucket and path_style: the service did not accept them.",
	targets.KindRateLimited:         "The S3 service is throttling requests (SlowDown); Bastion retries, lower concurrency if it persists.",
	targets.KindTimeout:             "The S3 service stopped answering in time; check its status and the network.",
	targets.KindUpstreamUnavailable: "The S3 service is unavailable (5xx); Bastion will retry later.",
	targets.KindNetwork:             "Could not reach the S3 endpoint; check the endpoint URL, DNS and the network.",
	targets.KindIntegrity:           "The data did not arrive intact (size or checksum mismatch); run the backup again.",
	targets.KindNotFound:            "The object is missing in the bucket; the snapshot may have been deleted there.",
	targets.KindIO:                  "Reading the local file to upload failed; check the node's disk.",
	targets.KindUnknown:             "The S3 service gave an unexpected answer; see the error details.",
}

func newErr(kind, op string, status int, err error) *targets.Error {
	return &targets.Error{Kind: kind, Code: Code(kind), Hint: Hint(kind), HTTPStatus: status, Op: op, Err: err}
}

// codeKinds maps S3 error codes to kinds; the status decides for codes not listed.
var codeKinds = map[string]string{
	"AccessDenied":                 targets.KindAuth,
	"InvalidAccessKeyId":           targets.KindAuth,
	"SignatureDoesNotMatch":        targets.KindAuth,
	"ExpiredToken":                 targets.KindAuth,
	"InvalidToken":                 targets.KindAuth,
	"AllAccessDisabled":            targets.KindPermission,
	"AccountProblem":               targets.KindPermission,
	"NoSuchBucket":                 targets.KindConfig,
	"InvalidBucketName":            targets.KindConfig,
	"PermanentRedirect":            targets.KindConfig,
	"TemporaryRedirect":            targets.KindConfig,
	"AuthorizationHeaderMalformed": targets.KindConfig, // usually the wrong region
	"InvalidRegion":                targets.KindConfig,
	"IllegalLocationConstraint":    targets.KindConfig,
	"NoSuchUpload":                 targets.KindUnknown,
	"NoSuchKey":                    targets.KindNotFound,
	"EntityTooLarge":               targets.KindPayloadTooLarge,
	"EntityTooSmall":               targets.KindConfig,
	"BadDigest":                    targets.KindIntegrity,
	"InvalidDigest":                targets.KindIntegrity,
	"XAmzContentSHA256Mismatch":    targets.KindIntegrity,
	"XAmzContentChecksumMismatch":  targets.KindIntegrity,
	"IncompleteBody":               targets.KindIntegrity,
	"QuotaExceeded":                targets.KindStorageFull,
	"StorageFull":                  targets.KindStorageFull,
	"XMinioStorageFull":            targets.KindStorageFull,
	"SlowDown":                     targets.KindRateLimited,
	"SlowDownWrite":                targets.KindRateLimited,
	"SlowDownRead":                 targets.KindRateLimited,
	"TooManyRequests":              targets.KindRateLimited,
	"RequestTimeout":               targets.KindTimeout,
	"RequestTimeTooSkewed":         targets.KindConfig,
	"ServiceUnavailable":           targets.KindUpstreamUnavailable,
	"InternalError":                targets.KindUpstreamUnavailable,
	"XMinioServerNotInitialized":   targets.KindUpstreamUnavailable,
	"OperationAborted":             targets.KindUpstreamUnavailable,
	"RequestTimeoutException":      targets.KindTimeout,
}

// errShortBody is what the body reader reports when the data ends before its declared size.
var errShortBody = errors.New("the data to upload ended before its declared size")

// errBodyRead marks a failure reading the caller's body (local I/O), as opposed to the network.
type errBodyRead struct{ err error }

func (e *errBodyRead) Error() string { return "read the data to upload: " + e.err.Error() }
func (e *errBodyRead) Unwrap() error { return e.err }

// errStalled is the cancel cause of a request that made no progress for the request timeout.
var errStalled = errors.New("no progress within the request timeout")

// classify turns an error from minio-go (or the transport under it) into a targets.Error. A
// canceled caller context is returned wrapped as is: it is not a failure of the target and must
// not be retried. Object names and bucket appear in ops and messages; credentials never do:
// minio-go's messages come from the server's XML or the transport, and URLs are stripped.
func classify(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, context.Cause(ctx))
	}
	var te *targets.Error
	if errors.As(err, &te) || errors.Is(err, errCompleteAppeared) {
		return err
	}
	var br *errBodyRead
	switch {
	case errors.Is(err, errShortBody):
		return newErr(targets.KindIntegrity, op, 0, errShortBody)
	case errors.As(err, &br):
		return newErr(targets.KindIO, op, 0, br)
	case errors.Is(err, errStalled):
		return newErr(targets.KindTimeout, op, 0, errStalled)
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) && (er.StatusCode != 0 || er.Code != "") {
		return responseErr(op, er)
	}
	return transportErr(op, err)
}

func responseErr(op string, er minio.ErrorResponse) *targets.Error {
	kind, ok := codeKinds[er.Code]
	if !ok {
		kind = targets.StatusKind(er.StatusCode)
	}
	// HEAD answers have no body: minio-go names a 404 on an object NoSuchKey, which is right
	// for the object; a missing bucket then shows as a missing object, and Put finds out.
	msg := er.Code
	if er.Message != "" {
		msg += ": " + er.Message
	}
	if er.StatusCode != 0 {
		msg = fmt.Sprintf("server answered %d %s", er.StatusCode, msg)
	}
	err := errors.New(msg)
	if kind == targets.KindNotFound {
		err = fmt.Errorf("%s: %w", msg, targets.ErrNotExist)
	}
	return newErr(kind, op, er.StatusCode, err)
}

func transportErr(op string, err error) *targets.Error {
	kind, err := targets.TransportKind(err)
	if kind == targets.KindNetwork && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) {
		err = fmt.Errorf("connection closed early: %w", err)
	}
	return newErr(kind, op, 0, err)
}

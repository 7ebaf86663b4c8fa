// Package s3 stores backup runs in an S3-compatible bucket:
// <prefix>/<job_id>/<run_id>/<name>, the same layout as local_dir and WebDAV.
//
// It speaks S3 through minio-go's low-level Core API, so that this package, not the library,
// decides how an upload is cut into parts, how each part is checked and when it is retried:
// every request body is read straight from the caller's io.ReadSeeker (no part buffer), every
// PUT carries Content-MD5 so the service verifies what arrived, and an object appears under its
// name only when the single PUT or the multipart upload's completion succeeds. Failures are
// classified into targets.Error kinds with a stable code (s3_<kind>) and a hint for the UI; only
// network-ish kinds are retried.
package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/retrying"
)

// Defaults and bounds.
const (
	DefaultRequestTimeout = 60 * time.Second
	DefaultConnectTimeout = 30 * time.Second
	DefaultMaxPutAttempts = 3
	MaxMaxPutAttempts     = 20
	// otherAttempts is how often HEAD, GET, LIST and DELETE requests are tried.
	otherAttempts = 3
	// maxListPage is S3's page size limit for listings and for one DeleteObjects request.
	maxListPage = 1000
)

// Options tune a Target. The zero value is usable.
type Options struct {
	// Transport sends the requests. The default clones http.DefaultTransport, dials with
	// ConnectTimeout and fails a connection on which nothing moved for RequestTimeout.
	Transport http.RoundTripper
	// RequestTimeout is how long a connection may move no byte in either direction, while a
	// request waits for an answer, sends its body or streams a download. It is not a limit on a
	// whole transfer. Default 60 s. Ignored when Transport is set.
	RequestTimeout time.Duration
	// ConnectTimeout bounds dialing. Default 30 s. Ignored when Transport is set.
	ConnectTimeout time.Duration
	// MaxPutAttempts is how often each PUT (a whole object or one part) is tried, 1..20.
	// Default 3.
	MaxPutAttempts int
	// Clock is read by the default Sleep. Default wall clock.
	Clock clock.Clock
	// Sleep waits between attempts. Default waits on Clock.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives retry and cleanup messages (never credentials or bodies).
	Logger zerolog.Logger
	// ListPageSize is how many keys one listing page and one DeleteObjects request hold,
	// 1..1000. Default 1000.
	ListPageSize int
}

// Target is an S3 target. It is safe for concurrent use.
type Target struct {
	cfg      Config
	endpoint string // normalized, no userinfo, query or path
	core     minio.Core
	maxPut   int
	page     int
	sleep    func(ctx context.Context, d time.Duration) error
	log      zerolog.Logger
}

// Open validates the config and the credentials and returns a Target. No request is sent: a
// wrong key or bucket shows on the first operation, classified (s3_auth, s3_config).
func Open(ctx context.Context, cfg Config, creds Credentials, opts Options) (*Target, error) {
	const op = "open s3 target"
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	cfg = cfg.Normalized()
	if err := cfg.Validate(); err != nil {
		return nil, newErr(targets.KindConfig, op, 0, err)
	}
	if err := creds.Validate(); err != nil {
		return nil, newErr(targets.KindConfig, op, 0, err)
	}
	host, secure, _ := parseEndpoint(cfg.Endpoint)
	t := &Target{
		cfg:      cfg,
		endpoint: cfg.Endpoint,
		maxPut:   opts.MaxPutAttempts,
		page:     opts.ListPageSize,
		sleep:    opts.Sleep,
		log:      opts.Logger.With().Str("component", "target_s3").Logger(),
	}
	switch {
	case t.maxPut == 0:
		t.maxPut = DefaultMaxPutAttempts
	case t.maxPut < 1 || t.maxPut > MaxMaxPutAttempts:
		return nil, newErr(targets.KindConfig, op, 0, fmt.Errorf("max PUT attempts must be 1..%d", MaxMaxPutAttempts))
	}
	switch {
	case t.page == 0:
		t.page = maxListPage
	case t.page < 1 || t.page > maxListPage:
		return nil, newErr(targets.KindConfig, op, 0, fmt.Errorf("list page size must be 1..%d", maxListPage))
	}
	if opts.RequestTimeout < 0 || opts.ConnectTimeout < 0 {
		return nil, newErr(targets.KindConfig, op, 0, errors.New("timeouts must not be negative"))
	}
	if t.sleep == nil {
		clk := opts.Clock
		if clk == nil {
			clk = clock.Real{}
		}
		t.sleep = retrying.ClockSleep(clk)
	}
	tr := opts.Transport
	if tr == nil {
		tr = buildTransport(opts)
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(creds.AccessKeyID, creds.SecretAccessKey, ""),
		Secure:       secure,
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: lookup,
		// Retries are ours: they seek the body back, wait on the injected clock and log.
		MaxRetries: 1,
	})
	if err != nil {
		// minio-go's message may repeat the endpoint, which Validate already checked.
		return nil, newErr(targets.KindConfig, op, 0, errors.New("endpoint not accepted by the S3 client"))
	}
	t.core = minio.Core{Client: client}
	return t, nil
}

func buildTransport(opts Options) http.RoundTripper {
	connect := opts.ConnectTimeout
	if connect == 0 {
		connect = DefaultConnectTimeout
	}
	idle := opts.RequestTimeout
	if idle == 0 {
		idle = DefaultRequestTimeout
	}
	d := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: c, idle: idle}, nil
	}
	tr.MaxIdleConnsPerHost = 16
	// Answers are small XML documents or object bodies: compression gains nothing and would
	// hide a download's real length.
	tr.DisableCompression = true
	return tr
}

// idleConn fails a read or write when no byte moved on the connection, in either direction,
// for idle: a stalled server, or a reader that stopped reading a download. Both directions
// share one deadline because the transport reads the answer while the body is still being
// sent, and a large PUT may be answered only minutes after it started.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(p)
}

// Type is "s3".
func (t *Target) Type() string { return Type }

// Config is the normalized config the Target was opened with (no credentials).
func (t *Target) Config() Config { return t.cfg }

// BaseURL is s3://<bucket>/<prefix>/, without endpoint or credentials.
func (t *Target) BaseURL() string {
	u := "s3://" + t.cfg.Bucket + "/"
	if t.cfg.Prefix != "" {
		u += escapePath(t.cfg.Prefix) + "/"
	}
	return u
}

// Location is s3://<bucket>/<prefix>/<job_id>/<run_id>/.
func (t *Target) Location(run targets.RunRef) string {
	return t.BaseURL() + url.PathEscape(run.JobID) + "/" + url.PathEscape(run.RunID) + "/"
}

// Redacted describes the target for a run's snapshot: the target object (endpoint, region,
// bucket, prefix, secret name), which holds no credentials.
func (t *Target) Redacted() targets.Redacted { return redact(t.cfg) }

// runPrefix is the key prefix of a run, ending in "/".
func (t *Target) runPrefix(run targets.RunRef) string {
	p := run.JobID + "/" + run.RunID + "/"
	if t.cfg.Prefix != "" {
		p = t.cfg.Prefix + "/" + p
	}
	return p
}

func (t *Target) key(run targets.RunRef, name string) string { return t.runPrefix(run) + name }

func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func checkArgs(run targets.RunRef, name string) error {
	if err := targets.ValidateRun(run); err != nil {
		return err
	}
	return targets.ValidateName(name)
}

// withRetries runs fn up to attempts times while it fails with a retriable kind, waiting
// the shared backoff between attempts. The returned error is classified and carries the attempt count.
func (t *Target) withRetries(ctx context.Context, op string, attempts int, fn func() error) error {
	for i := 1; ; i++ {
		err := classify(ctx, op, fn())
		if err == nil {
			return nil
		}
		var te *targets.Error
		if !errors.As(err, &te) {
			return err // canceled
		}
		te.Attempts = i
		if !targets.Retriable(te.Kind) || i >= attempts {
			return te
		}
		wait := retrying.DefaultBackoff(i)
		t.log.Warn().Str("op", op).Int("attempt", i).Dur("wait", wait).Str("code", te.Code).Err(te.Err).Msg("s3 request failed, retrying")
		if err := t.sleep(ctx, wait); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
}

var _ targets.Target = (*Target)(nil)

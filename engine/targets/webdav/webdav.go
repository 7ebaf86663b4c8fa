// Package webdav stores backup runs on a WebDAV server: <base_url>/<job_id>/<run_id>/<name>.
//
// It speaks the handful of methods it needs (MKCOL, HEAD, PUT, GET, PROPFIND, DELETE) with
// net/http and encoding/xml. Every request carries HTTP Basic auth from the WebDAV secret; the
// base URL may not carry credentials. Failures are classified into targets.Error kinds with a
// stable code (webdav_<kind>) and a hint for the UI. Each operation sends its requests once;
// RetryPolicy says what engine/targets/retrying retries (network-ish kinds), and the driver's
// Open returns the target wrapped in it.
//
// Servers differ in how they store a PUT that is cut off: some leave a truncated file under the
// final name. Such a file never has the expected size, so a resume by size re-sends it.
package webdav

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/retrying"
)

// Defaults and bounds (spec §2 limits).
const (
	DefaultRequestTimeout = 60 * time.Second
	DefaultConnectTimeout = 30 * time.Second
	DefaultMaxPutAttempts = 3
	MaxMaxPutAttempts     = 20

	// otherAttempts is how often MKCOL, HEAD, GET, PROPFIND and DELETE are tried.
	otherAttempts = 3
	// maxParentLevels bounds the walk up creating missing parent collections.
	maxParentLevels = 32
	// maxWalkEntries bounds the PROPFIND walk of a run collection a server will not DELETE.
	maxWalkEntries = 10000
)

// Options tune a Target. The zero value is usable.
type Options struct {
	// Client sends the requests. Its redirect policy is replaced: a redirected PUT or DELETE
	// would silently turn into a GET, so redirects are reported as config errors instead.
	Client *http.Client
	// Transport is used when Client is nil. The default clones http.DefaultTransport with
	// ConnectTimeout.
	Transport http.RoundTripper
	// RequestTimeout is how long a request may make no progress: no response yet and no body
	// byte sent or received. It is not a limit on the whole transfer, so a large part on a slow
	// link is fine as long as bytes keep flowing. Default 60 s.
	RequestTimeout time.Duration
	// ConnectTimeout bounds dialing when the transport is built here. Default 30 s.
	ConnectTimeout time.Duration
	// MaxPutAttempts is how often a PUT is tried, 1..20. Default 3.
	MaxPutAttempts int
	// Clock is read for Retry-After dates, rate limits and request timeouts. Default wall clock.
	Clock clock.Clock
	// Sleep waits between attempts and for rate limits. Default waits on Clock.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives retry and cleanup messages (never URLs with credentials or bodies).
	Logger zerolog.Logger
	// Limits optionally throttle requests.
	Limits Limits
	// SecretName is the name of the WebDAV secret the credentials came from, for Redacted.
	SecretName string
}

// Limits throttle requests. Zero fields mean unlimited.
type Limits struct {
	// Concurrency caps requests in flight at once, 0..128. A download (Open) holds its slot
	// until it is closed, so a caller must not keep more streams open than this.
	Concurrency int
	PutQPS      float64 // PUT requests per second, 0..10000
	HeadQPS     float64 // HEAD requests per second
	MkcolQPS    float64 // MKCOL requests per second
	Burst       int     // token bucket size for each rate, 0..100000; default 1
}

// Target is a WebDAV target. It is safe for concurrent use.
type Target struct {
	base       string // normalized, ends in "/", no userinfo, query or fragment
	basePath   string // base's decoded path, for recognising hrefs
	user, pass string
	secretName string

	client   *http.Client
	timeout  time.Duration
	maxPut   int
	clk      clock.Clock
	sleep    func(ctx context.Context, d time.Duration) error
	log      zerolog.Logger
	sem      chan struct{}
	limiters map[string]*rate.Limiter // by method: PUT, HEAD, MKCOL

	mu      sync.Mutex
	created map[string]bool          // run collections made by this Target ("job/run")
	making  map[string]chan struct{} // run collections being made; closed when done
}

// New validates baseURL and the credentials and returns a Target. No request is sent.
func New(baseURL string, creds secrets.WebDAV, opts Options) (*Target, error) {
	const op = "new webdav target"
	base, basePath, err := normalizeBase(baseURL)
	if err != nil {
		return nil, newErr(targets.KindConfig, op, 0, err)
	}
	if err := creds.Validate(); err != nil {
		return nil, newErr(targets.KindConfig, op, 0, fmt.Errorf("webdav credentials: %w", err))
	}
	t := &Target{
		base:       base,
		basePath:   basePath,
		user:       creds.Username,
		pass:       creds.Password,
		secretName: opts.SecretName,
		timeout:    opts.RequestTimeout,
		maxPut:     opts.MaxPutAttempts,
		clk:        opts.Clock,
		sleep:      opts.Sleep,
		log:        opts.Logger.With().Str("component", "target_webdav").Logger(),
		limiters:   map[string]*rate.Limiter{},
		created:    map[string]bool{},
		making:     map[string]chan struct{}{},
	}
	switch {
	case t.timeout < 0:
		return nil, newErr(targets.KindConfig, op, 0, errors.New("request timeout must not be negative"))
	case t.timeout == 0:
		t.timeout = DefaultRequestTimeout
	}
	switch {
	case t.maxPut == 0:
		t.maxPut = DefaultMaxPutAttempts
	case t.maxPut < 1 || t.maxPut > MaxMaxPutAttempts:
		return nil, newErr(targets.KindConfig, op, 0, fmt.Errorf("max PUT attempts must be 1..%d", MaxMaxPutAttempts))
	}
	if t.clk == nil {
		t.clk = clock.Real{}
	}
	if t.sleep == nil {
		t.sleep = retrying.ClockSleep(t.clk)
	}
	if err := t.applyLimits(opts.Limits); err != nil {
		return nil, newErr(targets.KindConfig, op, 0, err)
	}
	if opts.ConnectTimeout < 0 {
		return nil, newErr(targets.KindConfig, op, 0, errors.New("connect timeout must not be negative"))
	}
	t.client = buildClient(opts)
	return t, nil
}

func (t *Target) applyLimits(l Limits) error {
	if l.Concurrency < 0 || l.Concurrency > 128 {
		return errors.New("concurrency must be 0..128")
	}
	if l.Burst < 0 || l.Burst > 100000 {
		return errors.New("burst must be 0..100000")
	}
	burst := max(l.Burst, 1)
	for method, qps := range map[string]float64{http.MethodPut: l.PutQPS, http.MethodHead: l.HeadQPS, "MKCOL": l.MkcolQPS} {
		if qps < 0 || qps > 10000 {
			return fmt.Errorf("%s rate must be 0..10000 per second", method)
		}
		if qps > 0 {
			t.limiters[method] = rate.NewLimiter(rate.Limit(qps), burst)
		}
	}
	if l.Concurrency > 0 {
		t.sem = make(chan struct{}, l.Concurrency)
	}
	return nil
}

func buildClient(opts Options) *http.Client {
	var c http.Client
	if opts.Client != nil {
		c = *opts.Client
	} else {
		c.Transport = opts.Transport
		if c.Transport == nil {
			connect := opts.ConnectTimeout
			if connect == 0 {
				connect = DefaultConnectTimeout
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.DialContext = (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext
			tr.MaxIdleConnsPerHost = max(opts.Limits.Concurrency, 8)
			c.Transport = tr
		}
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// normalizeBase checks an http(s) URL and returns it ending in "/" without its fragment.
// Error messages never repeat the URL: it may hold a password.
func normalizeBase(raw string) (base, decodedPath string, err error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", "", errors.New("base_url is not a valid URL")
	}
	if u.User != nil {
		return "", "", errors.New("base_url must not carry a user name or password; credentials come from the WebDAV secret")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "", "", errors.New("base_url must be an absolute http or https URL")
	}
	if u.RawQuery != "" || u.ForceQuery {
		return "", "", errors.New("base_url must not have a query string")
	}
	u.Fragment, u.RawFragment = "", ""
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	return u.String(), u.Path, nil
}

func (t *Target) Type() string { return Type }

// BaseURL is the normalized base URL (no credentials, ends in "/").
func (t *Target) BaseURL() string { return t.base }

// Location is the run collection's URL.
func (t *Target) Location(run targets.RunRef) string {
	return t.base + escapeSegment(run.JobID) + "/" + escapeSegment(run.RunID) + "/"
}

func (t *Target) Redacted() targets.Redacted {
	return Redact(t.base, t.secretName)
}

func (t *Target) jobURL(run targets.RunRef) string { return t.base + escapeSegment(run.JobID) + "/" }

// fileURL is the URL of run/name; the segments of a data/<path> name are escaped one by one.
func (t *Target) fileURL(run targets.RunRef, name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = escapeSegment(s)
	}
	return t.Location(run) + strings.Join(segs, "/")
}

// escapeSegment percent-encodes every byte outside RFC 3986's unreserved set. url.PathEscape
// keeps sub-delimiters such as ';' and '=', which some servers read as path parameters.
func escapeSegment(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func checkArgs(run targets.RunRef, name string) error {
	if err := targets.ValidateRun(run); err != nil {
		return err
	}
	return targets.ValidateName(name)
}

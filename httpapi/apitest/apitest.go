// Package apitest starts the real Hub HTTP API for tests: httpapi.New over a real, migrated
// SQLite file, served on a loopback socket, with a fake clock and every log line captured.
//
//	hub := apitest.Start(t)                     // or apitest.Start(t, apitest.WithConfig(...))
//	c := hub.Login(t)                           // setup + login; CSRF sent on mutations
//	status, body := c.Post(t, "/api/jobs", job) // body: map from the JSON object answer
//	resp := c.Do(t, "GET", "/api/secrets/webdav", nil)
//	items := resp.JSONArray(t)
//
// A resource registers its services through WithConfig, which runs after the defaults (DB,
// Clock, Logger, Secrets with a master.key in DataDir) are filled in, so a constructor can use
// them:
//
//	apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
//		cfg.Runs = runs.New(runs.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger})
//	}))
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/audit"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// The administrator Login creates.
const (
	Username = "admin"
	Password = "correct horse battery staple"
)

// Epoch is where the default fake clock starts.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Option configures Start.
type Option func(*options)

type options struct {
	clock     *clock.Fake
	configure []func(*httpapi.Config)
}

// WithClock makes c the Hub's clock (default: a fake clock at Epoch).
func WithClock(c *clock.Fake) Option { return func(o *options) { o.clock = c } }

// WithConfig changes the httpapi.Config before the handler is built. Functions run in order,
// after DB, Clock, Logger and the other defaults are set.
func WithConfig(f func(cfg *httpapi.Config)) Option {
	return func(o *options) { o.configure = append(o.configure, f) }
}

// Hub is a running API under test.
type Hub struct {
	URL     string // http://127.0.0.1:port
	DB      *storage.DB
	Clock   *clock.Fake
	Logs    *Logs
	DataDir string         // a directory for the test's files; master.key lives here
	Secrets *secrets.Store // the store behind /api/secrets (Config.Secrets unless WithConfig replaced it)
	Config  httpapi.Config // as given to httpapi.New
	Handler http.Handler   // to serve requests directly, e.g. with a chosen RemoteAddr
	Server  *httptest.Server
}

// Start builds and serves the API; everything stops when the test ends.
func Start(t testing.TB, opts ...Option) *Hub {
	t.Helper()
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.clock == nil {
		o.clock = clock.NewFake(Epoch)
	}
	logs := &Logs{}
	h := &Hub{DB: storagetest.Open(t), Clock: o.clock, Logs: logs, DataDir: t.TempDir()}
	cfg := httpapi.Config{
		Logger:      zerolog.New(logs).Level(zerolog.TraceLevel).With().Timestamp().Logger(),
		DB:          h.DB,
		Version:     "test",
		HubTimezone: "UTC",
		Clock:       o.clock,
	}
	defaults(t, h, &cfg)
	for _, f := range o.configure {
		f(&cfg)
	}
	h.Config = cfg
	h.Handler = httpapi.New(cfg)
	h.Server = httptest.NewServer(h.Handler)
	t.Cleanup(h.Server.Close)
	h.URL = h.Server.URL
	return h
}

// defaults fills the Config fields every test gets; resources add theirs here when a default
// costs nothing.
func defaults(t testing.TB, h *Hub, cfg *httpapi.Config) {
	t.Helper()
	keys, _, err := secrets.OpenKeyring(context.Background(), h.DB, filepath.Join(h.DataDir, secrets.MasterKeyFile), h.Clock.Now())
	if err != nil {
		t.Fatalf("create master key: %v", err)
	}
	h.Secrets = secrets.NewStore(h.DB, keys, h.Clock)
	cfg.Secrets = h.Secrets
	cfg.Audit = audit.NewRecorder(h.DB, cfg.Logger)
	cfg.DataDir = h.DataDir
}

// FlushAudit waits until the audit entries of the requests answered so far are in the database.
func (h *Hub) FlushAudit(t testing.TB) {
	t.Helper()
	if err := h.Config.Audit.Flush(context.Background()); err != nil {
		t.Fatalf("flush audit log: %v", err)
	}
}

// Client returns a client without a session, with its own cookie jar.
func (h *Hub) Client(t testing.TB) *Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Client{Hub: h, HTTP: &http.Client{Jar: jar, Timeout: time.Minute}, Header: http.Header{}}
}

// Setup creates the administrator (Username, Password); it fails the test unless setup answers
// 204.
func (h *Hub) Setup(t testing.TB) {
	t.Helper()
	resp := h.Client(t).Do(t, http.MethodPost, "/api/setup/initialize", map[string]string{"username": Username, "password": Password})
	if resp.Status != http.StatusNoContent {
		t.Fatalf("setup: %d %s", resp.Status, resp.Body)
	}
}

// Login runs setup (when no user exists yet) and logs in as Username; the returned client sends
// the session cookie on every request and the CSRF token on every mutation.
func (h *Hub) Login(t testing.TB) *Client {
	t.Helper()
	c := h.Client(t)
	if st, body := c.Get(t, "/api/setup/status"); st != http.StatusOK {
		t.Fatalf("setup status: %d %v", st, body)
	} else if body["needs_setup"] == true {
		h.Setup(t)
	}
	c.Login(t, Username, Password)
	return c
}

// AddUser creates a user with role (and Password) through admin's client, and returns a client
// logged in as that user.
func (h *Hub) AddUser(t testing.TB, admin *Client, username, role string) *Client {
	t.Helper()
	resp := admin.Do(t, http.MethodPost, "/api/users", map[string]string{"username": username, "password": Password, "role": role})
	if resp.Status != http.StatusCreated {
		t.Fatalf("create user %s: %d %s", username, resp.Status, resp.Body)
	}
	c := h.Client(t)
	c.Login(t, username, Password)
	return c
}

// CreateToken creates an API token through c and returns its id and the token.
func (c *Client) CreateToken(t testing.TB, name, role string) (int64, string) {
	t.Helper()
	resp := c.Do(t, http.MethodPost, "/api/tokens", map[string]string{"name": name, "role": role})
	if resp.Status != http.StatusCreated {
		t.Fatalf("create token %s: %d %s", name, resp.Status, resp.Body)
	}
	var out struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	resp.Decode(t, &out)
	return out.ID, out.Token
}

// BearerClient returns a client that authenticates with an API token only: no cookie jar, no
// CSRF token.
func (h *Hub) BearerClient(t testing.TB, token string) *Client {
	t.Helper()
	c := &Client{Hub: h, HTTP: &http.Client{Timeout: time.Minute}, Header: http.Header{}}
	c.Header.Set("Authorization", "Bearer "+token)
	return c
}

// Client talks to a Hub. Its methods fail the test on transport errors, never on HTTP status.
type Client struct {
	Hub    *Hub
	HTTP   *http.Client
	CSRF   string      // sent as X-CSRF-Token on requests other than GET/HEAD/OPTIONS when set
	Header http.Header // extra headers for every request
}

// Login logs in with the given credentials and keeps the CSRF token; it fails the test unless
// the login succeeds.
func (c *Client) Login(t testing.TB, username, password string) {
	t.Helper()
	resp := c.Do(t, http.MethodPost, "/api/auth/login", map[string]string{"username": username, "password": password})
	if resp.Status != http.StatusOK {
		t.Fatalf("login: %d %s", resp.Status, resp.Body)
	}
	tok, _ := resp.JSON(t)["csrf_token"].(string)
	if tok == "" {
		t.Fatalf("login answer has no csrf_token: %s", resp.Body)
	}
	c.CSRF = tok
}

// SessionCookie returns the session cookie the client holds, or nil.
func (c *Client) SessionCookie() *http.Cookie {
	u, _ := http.NewRequest(http.MethodGet, c.Hub.URL+"/", nil)
	for _, ck := range c.HTTP.Jar.Cookies(u.URL) {
		if ck.Name == httpapi.SessionCookie {
			return ck
		}
	}
	return nil
}

// Response is an answer read in full.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// Cookies are the Set-Cookie headers of the answer, with every attribute.
	Cookies []*http.Cookie
}

// JSON decodes the body as a JSON object; an empty body gives nil. It fails the test on anything
// else.
func (r *Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	if len(bytes.TrimSpace(r.Body)) == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("answer (status %d) is not a JSON object: %q", r.Status, r.Body)
	}
	return m
}

// JSONArray decodes the body as a JSON array.
func (r *Response) JSONArray(t testing.TB) []any {
	t.Helper()
	var a []any
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("answer (status %d) is not a JSON array: %q", r.Status, r.Body)
	}
	return a
}

// Decode unmarshals the body into v.
func (r *Response) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode answer (status %d) %q: %v", r.Status, r.Body, err)
	}
}

// ErrorCode is the "error" field of an error envelope, or "".
func (r *Response) ErrorCode() string {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error
}

// Do sends a request to path (relative to the Hub's URL). body may be nil, a string or []byte
// (sent as is), or any value (sent as JSON). Content-Type is application/json when there is a
// body, unless Header sets another.
func (c *Client) Do(t testing.TB, method, path string, body any) *Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encode request body: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.Hub.URL+path, rd)
	if err != nil {
		t.Fatalf("build request %s %s: %v", method, path, err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.CSRF != "" && method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions {
		req.Header.Set(httpapi.CSRFHeader, c.CSRF)
	}
	for k, vs := range c.Header {
		req.Header[k] = vs
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: raw, Cookies: resp.Cookies()}
}

// Get, Post, Put and Delete send a request and return the status and the answer decoded as a
// JSON object (nil for an empty body). Use Do for arrays, headers and cookies.
func (c *Client) Get(t testing.TB, path string) (int, map[string]any) {
	t.Helper()
	return c.object(t, http.MethodGet, path, nil)
}

func (c *Client) Post(t testing.TB, path string, body any) (int, map[string]any) {
	t.Helper()
	return c.object(t, http.MethodPost, path, body)
}

func (c *Client) Put(t testing.TB, path string, body any) (int, map[string]any) {
	t.Helper()
	return c.object(t, http.MethodPut, path, body)
}

func (c *Client) Delete(t testing.TB, path string) (int, map[string]any) {
	t.Helper()
	return c.object(t, http.MethodDelete, path, nil)
}

func (c *Client) object(t testing.TB, method, path string, body any) (int, map[string]any) {
	t.Helper()
	resp := c.Do(t, method, path, body)
	return resp.Status, resp.JSON(t)
}

// Logs collects the Hub's JSON log lines; safe for concurrent use.
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is every line logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines decodes every line; it fails the test on a line that is not JSON.
func (l *Logs) Lines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// Find returns the lines whose "message" is msg.
func (l *Logs) Find(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range l.Lines(t) {
		if m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// Contains reports whether any line contains s.
func (l *Logs) Contains(s string) bool { return strings.Contains(l.String(), s) }

// String implements fmt.Stringer for Response, for failure messages.
func (r *Response) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

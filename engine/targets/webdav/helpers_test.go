package webdav_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	xwebdav "golang.org/x/net/webdav"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/targettest"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// upstream is a real WebDAV server: base is its URL for the backup root, dir the directory it
// serves base from.
type upstream struct {
	base       string
	dir        string
	user, pass string
}

// startXNet serves a directory with golang.org/x/net/webdav under /dav/, behind Basic auth.
func startXNet(t *testing.T) upstream {
	t.Helper()
	dir := t.TempDir()
	user, pass := "bastion", "x-net-secret-pw"
	h := &xwebdav.Handler{Prefix: "/dav", FileSystem: xwebdav.Dir(dir), LockSystem: xwebdav.NewMemLS()}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="dav"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return upstream{base: srv.URL + "/dav/", dir: dir, user: user, pass: pass}
}

// startRclone serves a directory with `rclone serve webdav`; the test skips without rclone
// (fails under scripts/test).
func startRclone(t *testing.T) upstream {
	t.Helper()
	dir := t.TempDir()
	base, user, pass := testtool.StartRcloneWebDAV(t, dir)
	return upstream{base: base, dir: dir, user: user, pass: pass}
}

var epoch = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// testTarget is a Target as the opener builds it (retried under its RetryPolicy), with the
// WebDAV-only List of the target inside.
type testTarget struct {
	targets.Target
	raw *webdav.Target
}

func (t testTarget) List(ctx context.Context, p string) ([]webdav.Entry, error) {
	return t.raw.List(ctx, p)
}

// newTarget builds a Target on base with recorded sleeps, a fake clock (so the request
// timeout never fires unless the test advances it) and logs sent to the test and to logTo.
func newTarget(t *testing.T, base string, up upstream, opts webdav.Options, logTo ...io.Writer) (testTarget, *targettest.Sleeps) {
	t.Helper()
	s := &targettest.Sleeps{}
	if opts.Sleep == nil {
		opts.Sleep = s.Sleep
	}
	if opts.Clock == nil {
		opts.Clock = clock.NewFake(epoch)
	}
	opts.Logger = zerolog.New(io.MultiWriter(append(logTo, zerolog.NewTestWriter(t))...)).Level(zerolog.DebugLevel)
	tg, err := webdav.New(base, secrets.WebDAV{Username: up.user, Password: up.pass}, opts)
	if err != nil {
		t.Fatalf("new webdav target: %v", err)
	}
	return testTarget{Target: tg.WithRetries(), raw: tg}, s
}

// proxyTo forwards requests unchanged (same path) to the upstream's host.
func proxyTo(t *testing.T, up upstream) http.Handler {
	t.Helper()
	u, err := url.Parse(up.base)
	if err != nil {
		t.Fatal(err)
	}
	host := &url.URL{Scheme: u.Scheme, Host: u.Host}
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(host)
			r.Out.Host = host.Host
		},
		ErrorLog: nil,
	}
}

// onDisk reads a file the upstream stored, bypassing WebDAV.
func onDisk(t *testing.T, up upstream, rel ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{up.dir}, rel...)...))
	if err != nil {
		t.Fatalf("read upstream file: %v", err)
	}
	return b
}

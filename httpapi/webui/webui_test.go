package webui

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rs/zerolog"
)

const asset = "/assets/app-3f2a1b9c.js"

func setup(t *testing.T) *httptest.Server {
	t.Helper()
	fsys, err := Dir("testdata/dist")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(fsys, zerolog.New(zerolog.NewTestWriter(t))))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, method, path string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// A transport that neither adds Accept-Encoding nor decompresses, so the test sees the wire.
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestHashedAssetIsImmutableWithStrongETag(t *testing.T) {
	t.Parallel()
	srv := setup(t)
	resp, body := get(t, srv, "GET", asset, nil)
	want, _ := os.ReadFile("testdata/dist" + asset)
	if resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Fatalf("status %d, body %d bytes (want %d)", resp.StatusCode, len(body), len(want))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
		t.Errorf("Cache-Control = %q", cc)
	}
	etag := resp.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, "W/") {
		t.Errorf("ETag %q is not a strong validator", etag)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("Content-Type = %q", ct)
	}
	if resp.Header.Get("Last-Modified") == "" {
		t.Error("no Last-Modified")
	}

	resp, body = get(t, srv, "GET", asset, map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Fatalf("revalidation: status %d with %d body bytes, want 304 and none", resp.StatusCode, len(body))
	}
	resp, _ = get(t, srv, "GET", asset, map[string]string{"If-None-Match": `"other"`})
	if resp.StatusCode != 200 {
		t.Fatalf("mismatched If-None-Match: status %d", resp.StatusCode)
	}
}

func TestIndexAndSPAFallbackRevalidate(t *testing.T) {
	t.Parallel()
	srv := setup(t)
	index, _ := os.ReadFile("testdata/dist/index.html")
	for _, p := range []string{"/", "/index.html", "/jobs/0b7c8f0e-1111-4222-8333-944455556666", "/settings/webdav"} {
		resp, body := get(t, srv, "GET", p, nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, index) {
			t.Errorf("%s: status %d, body %q", p, resp.StatusCode, body)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("%s: Cache-Control = %q, want no-cache", p, cc)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("%s: Content-Type = %q, want text/html (never a download)", p, ct)
		}
	}
	resp, _ := get(t, srv, "GET", "/robots.txt", nil)
	if resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("unhashed file Cache-Control = %q", resp.Header.Get("Cache-Control"))
	}
}

func TestMissingHashedAssetIs404(t *testing.T) {
	t.Parallel()
	srv := setup(t)
	resp, _ := get(t, srv, "GET", "/assets/app-00000000.js", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
}

func TestIfModifiedSinceRangeAndHead(t *testing.T) {
	t.Parallel()
	srv := setup(t)
	resp, _ := get(t, srv, "GET", asset, nil)
	lm := resp.Header.Get("Last-Modified")
	resp, _ = get(t, srv, "GET", asset, map[string]string{"If-Modified-Since": lm})
	if resp.StatusCode != 304 {
		t.Errorf("If-Modified-Since: status %d, want 304", resp.StatusCode)
	}
	resp, body := get(t, srv, "GET", asset, map[string]string{"Range": "bytes=0-6"})
	if resp.StatusCode != http.StatusPartialContent || string(body) != "console" {
		t.Errorf("Range: status %d body %q", resp.StatusCode, body)
	}
	full, _ := os.ReadFile("testdata/dist" + asset)
	resp, body = get(t, srv, "HEAD", asset, nil)
	if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(full)) {
		t.Errorf("HEAD: status %d, %d body bytes, Content-Length %d", resp.StatusCode, len(body), resp.ContentLength)
	}
	resp, _ = get(t, srv, "POST", asset, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", resp.StatusCode)
	}
}

func TestPrecompressedSiblings(t *testing.T) {
	t.Parallel()
	srv := setup(t)
	plain, _ := get(t, srv, "GET", asset, nil)
	for _, tc := range []struct {
		accept, wantEnc, wantFile string
	}{
		{"gzip, deflate, br", "br", asset + ".br"},
		{"gzip", "gzip", asset + ".gz"},
		{"br;q=0, gzip", "gzip", asset + ".gz"},
		{"identity", "", asset},
	} {
		resp, body := get(t, srv, "GET", asset, map[string]string{"Accept-Encoding": tc.accept})
		want, _ := os.ReadFile("testdata/dist" + tc.wantFile)
		if resp.Header.Get("Content-Encoding") != tc.wantEnc || !bytes.Equal(body, want) {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, body from wrong file", tc.accept, resp.Header.Get("Content-Encoding"))
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
			t.Errorf("Accept-Encoding %q: Content-Type %q", tc.accept, resp.Header.Get("Content-Type"))
		}
		if resp.Header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("Accept-Encoding %q: Vary %q", tc.accept, resp.Header.Get("Vary"))
		}
		if tc.wantEnc != "" && resp.Header.Get("ETag") == plain.Header.Get("ETag") {
			t.Errorf("encoded variant %s shares the identity ETag", tc.wantEnc)
		}
	}
}

func TestTraversalIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/dist")); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(secret, []byte("TOP SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "escape.txt")); err != nil {
		t.Fatal(err)
	}
	fsys, err := Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(fsys, zerolog.Nop()))
	defer srv.Close()
	for _, p := range []string{"/../secret.txt", "/assets/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/escape.txt", "/a%5c..%5cb"} {
		req, _ := http.NewRequest("GET", srv.URL+p, nil)
		req.URL.RawPath = "" // keep the encoded form as sent
		req.URL.Opaque = p
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(body, []byte("TOP SECRET")) || bytes.Contains(body, []byte("root:")) {
			t.Errorf("%s leaked a file outside the UI directory", p)
		}
		if resp.StatusCode == 200 && !bytes.Contains(body, []byte(`<div id="app">`)) {
			t.Errorf("%s: status 200 with unexpected body %q", p, body)
		}
	}
}

func TestEmbeddedFSWithoutModTimes(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"index.html":         {Data: []byte("<!doctype html><p>hi")},
		"assets/app-1234.js": {Data: []byte("x=1")},
	}
	srv := httptest.NewServer(New(fsys, zerolog.Nop()))
	defer srv.Close()
	resp, body := get(t, srv, "GET", "/assets/app-1234.js", nil)
	if resp.StatusCode != 200 || string(body) != "x=1" || resp.Header.Get("ETag") == "" {
		t.Fatalf("status %d body %q etag %q", resp.StatusCode, body, resp.Header.Get("ETag"))
	}
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err != nil || time.Since(lm) > time.Hour {
		t.Errorf("Last-Modified %q should be the handler's start time", resp.Header.Get("Last-Modified"))
	}
}

func TestRebuiltFileIsPickedUpAfterRevalidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/dist")); err != nil {
		t.Fatal(err)
	}
	fsys, err := Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := New(fsys, zerolog.Nop())
	var mu sync.Mutex
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, _ := get(t, srv, "GET", "/", nil)
	oldTag := resp.Header.Get("ETag")
	newIndex := []byte("<!doctype html><p>rebuilt</p>")
	if err := os.WriteFile(filepath.Join(dir, "index.html"), newIndex, 0o644); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(revalidateEvery)
	mu.Unlock()
	resp, body := get(t, srv, "GET", "/", map[string]string{"If-None-Match": oldTag})
	if resp.StatusCode != 200 || !bytes.Equal(body, newIndex) || resp.Header.Get("ETag") == oldTag {
		t.Fatalf("after a rebuild: status %d, body %q, ETag %s (old %s)", resp.StatusCode, body, resp.Header.Get("ETag"), oldTag)
	}
	if err := os.Remove(filepath.Join(dir, "assets", "style-9d8e7f6a.css")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(revalidateEvery)
	mu.Unlock()
	if resp, _ := get(t, srv, "GET", "/assets/style-9d8e7f6a.css", nil); resp.StatusCode != 404 {
		t.Fatalf("deleted asset: status %d, want 404", resp.StatusCode)
	}
}

package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// A hashed asset with a precompressed sibling, served through the whole middleware chain: the
// encoding and caching headers of the UI handler, the request ID of the chain on every answer,
// and the access log line carrying that request ID.
func TestUIAssetThroughMiddleware(t *testing.T) {
	t.Parallel()
	var src strings.Builder
	for i := range 4000 {
		fmt.Fprintf(&src, "export const c%d = %d;\n", i, i*7919%10007)
	}
	js := []byte(src.String()) // its gzip is bigger than what net/http buffers before chunking
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(js)
	zw.Close()
	logs := &apitest.Logs{}
	h := httpapi.New(httpapi.Config{
		Logger: zerolog.New(logs),
		DB:     storagetest.Open(t),
		UI: fstest.MapFS{
			"index.html":            {Data: []byte("<!doctype html><div id=app></div>")},
			"assets/app-1a2b.js":    {Data: js},
			"assets/app-1a2b.js.gz": {Data: gz.Bytes()},
		},
	})
	srv := httptest.NewServer(h)
	defer srv.Close()

	fetch := func(hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/assets/app-1a2b.js", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	resp, body := fetch(map[string]string{"Accept-Encoding": "gzip, br"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(body, gz.Bytes()) ||
		resp.ContentLength != int64(gz.Len()) || resp.Header.Get("Vary") != "Accept-Encoding" ||
		resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Fatalf("gzip answer: status %d, headers %v, %d bytes", resp.StatusCode, resp.Header, len(body))
	}
	firstID := resp.Header.Get("X-Request-Id")
	if firstID == "" {
		t.Fatal("no X-Request-Id on an asset")
	}
	resp, body = fetch(map[string]string{"Accept-Encoding": "gzip", "If-None-Match": resp.Header.Get("ETag"), "X-Request-Id": "asset-304"})
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("X-Request-Id") != "asset-304" {
		t.Fatalf("revalidation: status %d, X-Request-Id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	resp, body = fetch(nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, js) ||
		resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("X-Request-Id") == firstID {
		t.Fatalf("identity answer: status %d, headers %v", resp.StatusCode, resp.Header)
	}
	var found bool
	for _, l := range logs.Find(t, "http request") {
		if l["request_id"] == "asset-304" {
			found = l["status"] == float64(304) && l["path"] == "/assets/app-1a2b.js"
		}
	}
	if !found {
		t.Fatalf("no access line for the 304 with its request ID: %v", logs.Find(t, "http request"))
	}
}

package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/httpapi/apitest"
)

func fetchDocs(t *testing.T, h *apitest.Hub, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", h.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Transport{}).RoundTrip(req) // no redirects followed, no cookie: a visitor
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var hrefRe = regexp.MustCompile(`href="([^"]*)"`)

// The operator docs are served without a login: an index of every docs/*.md, a page per document
// with its heading, links between documents that lead to pages, and the UI's caching.
func TestDocsSite(t *testing.T) {
	t.Parallel()
	h := apitest.Start(t)

	resp, _ := fetchDocs(t, h, "/docs", nil)
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/docs/" {
		t.Fatalf("/docs: %d %v", resp.StatusCode, resp.Header)
	}

	resp, index := fetchDocs(t, h, "/docs/", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/docs/: %d %v", resp.StatusCode, resp.Header)
	}
	mds, _ := filepath.Glob("../docs/*.md")
	if len(mds) < 5 {
		t.Fatalf("found %d docs", len(mds))
	}
	for _, md := range mds {
		name := strings.TrimSuffix(filepath.Base(md), ".md")
		if !strings.Contains(index, `href="`+name+`"`) {
			t.Errorf("index does not list %s", name)
		}
	}

	resp, page := fetchDocs(t, h, "/docs/jobs-and-runs", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "<h1") || !strings.Contains(page, `href="/docs/docs.css"`) {
		t.Fatalf("jobs-and-runs: %d %.300s", resp.StatusCode, page)
	}
	if resp, css := fetchDocs(t, h, "/docs/docs.css", nil); resp.StatusCode != http.StatusOK ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(css, "prefers-color-scheme: dark") {
		t.Fatalf("docs.css: %d %v", resp.StatusCode, resp.Header)
	}

	// Every link from one document to another was rewritten to a page that exists.
	links := 0
	for _, md := range mds {
		name := strings.TrimSuffix(filepath.Base(md), ".md")
		_, page := fetchDocs(t, h, "/docs/"+name, nil)
		for _, m := range hrefRe.FindAllStringSubmatch(page, -1) {
			u, err := url.Parse(m[1])
			if err != nil || u.Scheme != "" || strings.HasPrefix(u.Path, "/") || u.Path == "" || strings.Contains(u.Path, "/") {
				continue
			}
			if sibling := "../docs/" + u.Path; strings.HasSuffix(u.Path, ".md") && fileExists(sibling) {
				t.Errorf("%s links to %s, not its page", name, m[1])
				continue
			}
			links++
			if resp, _ := fetchDocs(t, h, "/docs/"+u.Path, nil); resp.StatusCode != http.StatusOK {
				t.Errorf("%s links to %s: %d", name, m[1], resp.StatusCode)
			}
		}
	}
	if links == 0 {
		t.Fatal("no link between documents was checked")
	}

	// Revalidation: a strong ETag, no-cache, and 304 for the current tag.
	resp, _ = fetchDocs(t, h, "/docs/security", nil)
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("headers: %v", resp.Header)
	}
	if resp, body := fetchDocs(t, h, "/docs/security", map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified || body != "" {
		t.Fatalf("revalidation: %d", resp.StatusCode)
	}

	for _, p := range []string{"/docs/no-such-doc", "/docs/sub/page", "/docs/go.mod"} {
		if resp, _ := fetchDocs(t, h, p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// No path under /docs reaches a file outside the rendered site, however it is spelled. The
// request lines are written by hand so that no client cleans them first.
func TestDocsNoTraversal(t *testing.T) {
	t.Parallel()
	h := apitest.Start(t)
	addr := strings.TrimPrefix(h.URL, "http://")
	for _, p := range []string{
		"/docs/../go.mod", "/docs/%2e%2e/go.mod", "/docs/..%2fgo.mod", "/docs/%2e%2e%2fgo.mod",
		"/docs/..%5cgo.mod", "/docs/..\\go.mod", "/docs/%2E%2E%2F%2E%2E%2Fgo.mod", "/docs/./../../go.mod",
		"/docs/security/../../go.mod", "/docs/%00", "/docs/..", "/docs/.%2e/go.mod",
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", p, addr)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatalf("%s: %v", p, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "module github.com") {
			t.Errorf("%s: %d %.100s", p, resp.StatusCode, body)
		}
	}
}

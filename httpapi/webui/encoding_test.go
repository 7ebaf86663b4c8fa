package webui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rs/zerolog"
)

//go:embed all:testdata/dist
var embeddedDist embed.FS

// Files of the generated fixture, beside the committed testdata/dist.
const (
	bigAsset    = "/assets/big-5f3e2d1c.js"     // 200 KB, .br and .gz siblings: sendfile from a directory
	gzOnlyAsset = "/assets/gzonly-77aa88bb.css" // a .gz but no .br
)

// fixture returns the committed testdata/dist plus a 200 KB script with both siblings and a
// stylesheet with only a .gz. The .gz files are real gzip; the .br stand-ins are only bytes that
// differ from the rest, since the handler never decodes what it serves.
func fixture(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := fs.WalkDir(os.DirFS("testdata/dist"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files[p], err = os.ReadFile(filepath.Join("testdata/dist", p))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Hex digests compress about 2:1: the .gz stays a sizeable file.
	var big bytes.Buffer
	for i := 0; big.Len() < 200_000; i++ {
		fmt.Fprintf(&big, "const h%d = %q;\n", i, fmt.Sprintf("%x", sha256.Sum256([]byte(strconv.Itoa(i)))))
	}
	files[bigAsset[1:]] = big.Bytes()[:200_000]
	files[bigAsset[1:]+".gz"] = gzipped(t, files[bigAsset[1:]])
	files[bigAsset[1:]+".br"] = bytes.Repeat([]byte("brotli stand-in "), 5000)
	css := bytes.Repeat([]byte("body{margin:0}\n"), 200)
	files[gzOnlyAsset[1:]] = css
	files[gzOnlyAsset[1:]+".gz"] = gzipped(t, css)
	return files
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// servingModes gives the fixture as a directory on disk (real files: sendfile) and as an
// in-memory file system without *os.File (what the embedded UI is), so every test runs against
// both ways of serving.
func servingModes(t *testing.T) (files map[string][]byte, modes map[string]fs.FS) {
	t.Helper()
	files = fixture(t)
	dir := t.TempDir()
	mapfs := fstest.MapFS{}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		mapfs[name] = &fstest.MapFile{Data: data}
	}
	dirFS, err := Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return files, map[string]fs.FS{"Dir": dirFS, "Memory": mapfs}
}

func serve(t *testing.T, fsys fs.FS) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(fsys, zerolog.New(zerolog.NewTestWriter(t))))
	t.Cleanup(srv.Close)
	return srv
}

func TestEncodingNegotiation(t *testing.T) {
	t.Parallel()
	files, modes := servingModes(t)
	for _, tc := range []struct {
		name, accept, path, wantEnc string
	}{
		{"Absent", "", bigAsset, ""},
		{"BrowserList", "gzip, deflate, br, zstd", bigAsset, "br"},
		{"OnlyGzip", "gzip", bigAsset, "gzip"},
		{"OnlyBrotli", "br", bigAsset, "br"},
		{"XGzipAlias", "x-gzip", bigAsset, "gzip"},
		{"BrotliRefused", "br;q=0, gzip", bigAsset, "gzip"},
		{"BothRefused", "gzip;q=0, br;q=0.000", bigAsset, ""},
		{"UpperCaseRefusal", "BR;Q=0, GZIP", bigAsset, "gzip"},
		{"SpacesAroundQ", "br ; q = 0 , gzip ; q=0.5", bigAsset, "gzip"},
		{"GzipRankedHigher", "br;q=0.5, gzip;q=0.8", bigAsset, "gzip"},
		{"TieGoesToBrotli", "gzip;q=0.5, br;q=0.5", bigAsset, "br"},
		{"SmallestQ", "br;q=0.001", bigAsset, "br"},
		{"MalformedQIsRefusal", "br;q=high, gzip;q=2", bigAsset, ""},
		{"Wildcard", "*", bigAsset, "br"},
		{"WildcardLowerThanGzip", "*;q=0.1, gzip", bigAsset, "gzip"},
		{"WildcardRefusedButGzipListed", "*;q=0, gzip", bigAsset, "gzip"},
		{"IdentityPreferred", "br;q=0.2, identity", bigAsset, ""},
		{"IdentityOnly", "identity", bigAsset, ""},
		{"NoBrotliSiblingFallsBackToGzip", "br, gzip", gzOnlyAsset, "gzip"},
		{"NoBrotliSiblingFallsBackToIdentity", "br", gzOnlyAsset, ""},
		{"SmallFile", "br, gzip", asset, "br"},
	} {
		for mode, fsys := range modes {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				srv := serve(t, fsys)
				resp, body := get(t, srv, "GET", tc.path, map[string]string{"Accept-Encoding": tc.accept})
				file := tc.path[1:] + map[string]string{"": "", "br": ".br", "gzip": ".gz"}[tc.wantEnc]
				if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != tc.wantEnc {
					t.Fatalf("status %d, Content-Encoding %q, want %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), tc.wantEnc)
				}
				if !bytes.Equal(body, files[file]) {
					t.Fatalf("body of %d bytes is not %s", len(body), file)
				}
				// An exact length, never chunked: chunking also rules out sendfile.
				if resp.ContentLength != int64(len(files[file])) || len(resp.TransferEncoding) > 0 {
					t.Errorf("Content-Length %d, Transfer-Encoding %v, want %d and none", resp.ContentLength, resp.TransferEncoding, len(files[file]))
				}
				if v := resp.Header.Values("Vary"); len(v) != 1 || v[0] != "Accept-Encoding" {
					t.Errorf("Vary %q", v)
				}
				if ct, want := resp.Header.Get("Content-Type"), map[string]string{".js": "text/javascript", ".css": "text/css"}[filepath.Ext(tc.path)]; !strings.HasPrefix(ct, want) {
					t.Errorf("Content-Type %q, want %s (the original's, whatever the encoding)", ct, want)
				}
			})
		}
	}
}

func TestETagsDifferPerEncodingAndRevalidate(t *testing.T) {
	t.Parallel()
	_, modes := servingModes(t)
	for mode, fsys := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			srv := serve(t, fsys)
			tags := map[string]string{}
			for _, enc := range []string{"identity", "gzip", "br"} {
				resp, _ := get(t, srv, "GET", bigAsset, map[string]string{"Accept-Encoding": enc})
				tag := resp.Header.Get("ETag")
				if !strings.HasPrefix(tag, `"`) {
					t.Fatalf("%s: ETag %q is not strong", enc, tag)
				}
				for other, t2 := range tags {
					if t2 == tag {
						t.Fatalf("%s and %s share ETag %s", enc, other, tag)
					}
				}
				tags[enc] = tag
			}
			for _, enc := range []string{"identity", "gzip", "br"} {
				resp, body := get(t, srv, "GET", bigAsset, map[string]string{"Accept-Encoding": enc, "If-None-Match": tags[enc]})
				if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
					t.Errorf("%s revalidation: status %d, %d body bytes", enc, resp.StatusCode, len(body))
				}
				if resp.Header.Get("ETag") != tags[enc] || resp.Header.Get("Vary") != "Accept-Encoding" ||
					resp.Header.Get("Cache-Control") != cacheImmutable {
					t.Errorf("%s 304 headers: %v", enc, resp.Header)
				}
			}
			// A cached gzip copy does not validate the brotli response the client now gets.
			resp, _ := get(t, srv, "GET", bigAsset, map[string]string{"Accept-Encoding": "br", "If-None-Match": tags["gzip"]})
			if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "br" || resp.Header.Get("ETag") != tags["br"] {
				t.Errorf("gzip ETag on a brotli request: status %d, encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
			}
			// Several tags, weak forms included, as a cache holding both variants sends them.
			resp, _ = get(t, srv, "GET", bigAsset, map[string]string{"Accept-Encoding": "gzip", "If-None-Match": `"x", W/` + tags["gzip"]})
			if resp.StatusCode != http.StatusNotModified {
				t.Errorf("tag list: status %d, want 304", resp.StatusCode)
			}
		})
	}
}

// The fast path for whole responses must send what http.ServeContent sends: the same request
// with a stale If-Modified-Since (decided by ServeContent) is the reference.
func TestWholeResponseHeadersMatchServeContent(t *testing.T) {
	t.Parallel()
	_, modes := servingModes(t)
	for mode, fsys := range modes {
		for _, enc := range []string{"identity", "gzip"} {
			t.Run(mode+"/"+enc, func(t *testing.T) {
				t.Parallel()
				srv := serve(t, fsys)
				for _, p := range []string{bigAsset, asset, "/", "/robots.txt"} {
					fast, fastBody := get(t, srv, "GET", p, map[string]string{"Accept-Encoding": enc})
					ref, refBody := get(t, srv, "GET", p, map[string]string{"Accept-Encoding": enc, "If-Modified-Since": "Mon, 02 Jan 2006 15:04:05 GMT"})
					if fast.StatusCode != 200 || ref.StatusCode != 200 || !bytes.Equal(fastBody, refBody) {
						t.Fatalf("%s: status %d and %d, bodies equal %v", p, fast.StatusCode, ref.StatusCode, bytes.Equal(fastBody, refBody))
					}
					fast.Header.Del("Date")
					ref.Header.Del("Date")
					if !maps.EqualFunc(fast.Header, ref.Header, slices.Equal) {
						t.Errorf("%s headers differ:\n fast %v\n  ref %v", p, fast.Header, ref.Header)
					}
					want := []string{"Accept-Ranges", "Cache-Control", "Content-Length", "Content-Type", "Etag", "Last-Modified", "X-Content-Type-Options"}
					if fast.Header.Get("Vary") != "" {
						want = append(want, "Vary")
					}
					if fast.Header.Get("Content-Encoding") != "" {
						want = append(want, "Content-Encoding")
					}
					if got := slices.Sorted(maps.Keys(fast.Header)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
						t.Errorf("%s header names %v, want %v", p, got, slices.Sorted(slices.Values(want)))
					}
				}
				// HEAD: the same headers, no body.
				resp, body := get(t, srv, "HEAD", bigAsset, map[string]string{"Accept-Encoding": enc})
				full, _ := get(t, srv, "GET", bigAsset, map[string]string{"Accept-Encoding": enc})
				if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != full.ContentLength || resp.Header.Get("ETag") != full.Header.Get("ETag") {
					t.Errorf("HEAD: status %d, %d body bytes, Content-Length %d (GET %d)", resp.StatusCode, len(body), resp.ContentLength, full.ContentLength)
				}
			})
		}
	}
}

func TestRangeOfEncodedVariant(t *testing.T) {
	t.Parallel()
	files, modes := servingModes(t)
	for mode, fsys := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			srv := serve(t, fsys)
			resp, body := get(t, srv, "GET", bigAsset, map[string]string{"Accept-Encoding": "gzip", "Range": "bytes=10-19"})
			if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, files[bigAsset[1:]+".gz"][10:20]) ||
				resp.ContentLength != 10 || resp.Header.Get("Content-Encoding") != "gzip" {
				t.Fatalf("status %d, %d bytes, Content-Length %d, Content-Encoding %q", resp.StatusCode, len(body), resp.ContentLength, resp.Header.Get("Content-Encoding"))
			}
		})
	}
}

// The embedded UI (an embed.FS: no modification times, no *os.File) answers like the same build
// on disk, Last-Modified aside.
func TestEmbeddedServesTheSameAsDir(t *testing.T) {
	t.Parallel()
	sub, err := fs.Sub(embeddedDist, "testdata/dist")
	if err != nil {
		t.Fatal(err)
	}
	dirFS, err := Dir("testdata/dist")
	if err != nil {
		t.Fatal(err)
	}
	embedded, disk := serve(t, sub), serve(t, dirFS)
	etag, _ := get(t, disk, "GET", asset, map[string]string{"Accept-Encoding": "br"})
	for _, rq := range []struct {
		method, path string
		hdr          map[string]string
	}{
		{"GET", asset, nil},
		{"GET", asset, map[string]string{"Accept-Encoding": "gzip"}},
		{"GET", asset, map[string]string{"Accept-Encoding": "gzip, br"}},
		{"GET", asset, map[string]string{"Accept-Encoding": "br", "If-None-Match": etag.Header.Get("ETag")}},
		{"GET", asset, map[string]string{"Range": "bytes=0-6"}},
		{"HEAD", asset, map[string]string{"Accept-Encoding": "br"}},
		{"GET", "/", nil},
		{"GET", "/jobs/42", nil},
		{"GET", "/robots.txt", nil},
		{"GET", "/assets/app-00000000.js", nil},
		{"POST", asset, nil},
	} {
		want, wantBody := get(t, disk, rq.method, rq.path, rq.hdr)
		got, gotBody := get(t, embedded, rq.method, rq.path, rq.hdr)
		for _, r := range []*http.Response{want, got} {
			r.Header.Del("Date")
			r.Header.Del("Last-Modified")
		}
		if got.StatusCode != want.StatusCode || !bytes.Equal(gotBody, wantBody) || !maps.EqualFunc(got.Header, want.Header, slices.Equal) {
			t.Errorf("%s %s %v: embedded %d %v (%d bytes), disk %d %v (%d bytes)", rq.method, rq.path, rq.hdr,
				got.StatusCode, got.Header, len(gotBody), want.StatusCode, want.Header, len(wantBody))
		}
	}
}

// recordingWriter is a ResponseWriter that notes how the body reached it.
type recordingWriter struct {
	hdr      http.Header
	status   int
	writes   [][]byte // each Write's slice, as passed (not copied)
	readFrom []io.Reader
	n        int64
}

func newRecordingWriter() *recordingWriter { return &recordingWriter{hdr: http.Header{}} }

func (w *recordingWriter) Header() http.Header { return w.hdr }
func (w *recordingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *recordingWriter) Write(p []byte) (int, error) {
	w.WriteHeader(200)
	w.writes = append(w.writes, p)
	w.n += int64(len(p))
	return len(p), nil
}
func (w *recordingWriter) ReadFrom(r io.Reader) (int64, error) {
	w.WriteHeader(200)
	w.readFrom = append(w.readFrom, r)
	n, err := io.Copy(io.Discard, r)
	w.n += n
	return n, err
}
func (w *recordingWriter) Flush() {}

// countingFS counts Open calls.
type countingFS struct {
	fs.FS
	opens atomic.Int64
}

func (c *countingFS) Open(name string) (fs.File, error) {
	c.opens.Add(1)
	return c.FS.Open(name)
}

// From a directory, a big file goes to the ResponseWriter's ReadFrom as the *os.File itself
// (what lets net/http use sendfile), from a file kept open: no open per request.
func TestDirectoryModeSendsOpenFilesToReadFrom(t *testing.T) {
	t.Parallel()
	files, modes := servingModes(t)
	fsys := &countingFS{FS: modes["Dir"]}
	h := New(fsys, zerolog.Nop())
	var opensAfterFirst int64
	for _, enc := range []string{"identity", "gzip", "br"} {
		for i := range 3 {
			if enc == "identity" && i == 1 {
				opensAfterFirst = fsys.opens.Load() // the first request described every variant
			}
			w := newRecordingWriter()
			req := httptest.NewRequest("GET", bigAsset, nil)
			req.Header.Set("Accept-Encoding", enc)
			h.ServeHTTP(w, req)
			if w.status != 200 || len(w.readFrom) != 1 || len(w.writes) != 0 {
				t.Fatalf("%s: status %d, %d ReadFrom and %d Write calls, want one ReadFrom", enc, w.status, len(w.readFrom), len(w.writes))
			}
			r := w.readFrom[0]
			if lr, ok := r.(*io.LimitedReader); ok {
				r = lr.R
			}
			if _, ok := r.(*os.File); !ok {
				t.Fatalf("%s: ReadFrom got %T, want an *os.File (sendfile)", enc, r)
			}
			want := int64(len(files[bigAsset[1:]+map[string]string{"identity": "", "gzip": ".gz", "br": ".br"}[enc]]))
			if w.n != want || w.hdr.Get("Content-Length") != strconv.FormatInt(want, 10) {
				t.Fatalf("%s: %d bytes sent, Content-Length %s, want %d", enc, w.n, w.hdr.Get("Content-Length"), want)
			}
		}
	}
	if n := fsys.opens.Load() - opensAfterFirst; n != 0 {
		t.Errorf("%d opens for 8 requests after the first, want none", n)
	}
}

// From a file system without real files (the embedded UI), a file is written in one piece from
// the copy held in memory: the same bytes every request, never copied through a buffer.
func TestMemoryModeWritesHeldBytes(t *testing.T) {
	t.Parallel()
	files, modes := servingModes(t)
	h := New(modes["Memory"], zerolog.Nop())
	var first []byte
	for range 3 {
		w := newRecordingWriter()
		req := httptest.NewRequest("GET", bigAsset, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		h.ServeHTTP(w, req)
		want := files[bigAsset[1:]+".gz"]
		if w.status != 200 || len(w.readFrom) != 0 || len(w.writes) != 1 || !bytes.Equal(w.writes[0], want) {
			t.Fatalf("status %d, %d ReadFrom and %d Write calls, want the whole file in one Write", w.status, len(w.readFrom), len(w.writes))
		}
		if first == nil {
			first = w.writes[0]
		} else if &first[0] != &w.writes[0][0] {
			t.Fatal("a request wrote a fresh copy of the file")
		}
	}
}

// Revalidation replaces a rebuilt big file; the file kept open for the old one is not served
// again.
func TestRebuiltBigFileIsServedFresh(t *testing.T) {
	t.Parallel()
	files := fixture(t)
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fsys, err := Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := New(fsys, zerolog.Nop())
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	h.now = func() time.Time { return time.Unix(0, now.Load()) }
	srv := httptest.NewServer(h)
	defer srv.Close()
	old, _ := get(t, srv, "GET", bigAsset, nil)
	// A rebuild writes a new file under the same name (vite empties the directory first).
	rebuilt := bytes.Repeat([]byte("x"), 100_000)
	p := filepath.Join(dir, filepath.FromSlash(bigAsset[1:]))
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, rebuilt, 0o644); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(revalidateEvery))
	resp, body := get(t, srv, "GET", bigAsset, nil)
	if !bytes.Equal(body, rebuilt) || resp.Header.Get("ETag") == old.Header.Get("ETag") || resp.ContentLength != int64(len(rebuilt)) {
		t.Fatalf("after a rebuild: %d bytes (want %d), ETag %s (old %s)", len(body), len(rebuilt), resp.Header.Get("ETag"), old.Header.Get("ETag"))
	}
}

// failingFS stops opening files when told to.
type failingFS struct {
	fs.FS
	fail atomic.Bool
}

func (f *failingFS) Open(name string) (fs.File, error) {
	if f.fail.Load() {
		return nil, fs.ErrPermission
	}
	return f.FS.Open(name)
}

// A file that can no longer be opened is a plain 404, without the caching headers of the file it
// was: an immutable 404 would stick in caches.
func TestUnopenableAssetIsPlain404(t *testing.T) {
	t.Parallel()
	_, modes := servingModes(t)
	fsys := &failingFS{FS: modes["Dir"]}
	h := New(fsys, zerolog.Nop())
	h.idleFiles.Store(maxIdleFiles) // keep no file open: every request opens its own
	var logs lockedBuffer
	reqLog := zerolog.New(&logs).With().Str("request_id", "req-gone").Logger()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(reqLog.WithContext(r.Context())))
	}))
	defer srv.Close()
	if resp, _ := get(t, srv, "GET", bigAsset, nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	fsys.fail.Store(true)
	resp, _ := get(t, srv, "GET", bigAsset, map[string]string{"Accept-Encoding": "gzip"})
	if resp.StatusCode != 404 {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
	for _, k := range []string{"Cache-Control", "Etag", "Last-Modified", "Content-Encoding", "Vary"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("404 carries %s: %s", k, v)
		}
	}
	if line := logs.String(); !strings.Contains(line, `"message":"open UI file"`) || !strings.Contains(line, `"request_id":"req-gone"`) {
		t.Errorf("the failure is not logged with the request ID: %s", line)
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

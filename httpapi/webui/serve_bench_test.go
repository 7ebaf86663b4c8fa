package webui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// discardWriter is a ResponseWriter that drops the body, so a benchmark counts the handler's own
// work and allocations, not a recorder's copy of the body.
type discardWriter struct {
	hdr    http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.hdr }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkServe is the handler alone (no network) for a hashed asset and its 304 revalidation,
// from a directory and from an embed.FS: impl=servecontent is the previous way (open the file and
// hand it to http.ServeContent on every request, which copies an embedded file through a 32 KB
// buffer), impl=webui is this package.
func BenchmarkServe(b *testing.B) {
	dirFS, err := Dir("testdata/dist")
	must(b, err)
	embFS, err := fs.Sub(embeddedDist, "testdata/dist")
	must(b, err)
	for _, src := range []struct {
		name string
		fsys fs.FS
	}{{"dir", dirFS}, {"embed", embFS}} {
		for _, impl := range []string{"servecontent", "webui"} {
			var h http.Handler = New(src.fsys, zerolog.Nop())
			if impl == "servecontent" {
				h = serveContentHandler(src.fsys)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", asset, nil))
			etag := w.Header().Get("ETag")
			for _, tc := range []struct {
				name, inm string
				want      int
			}{{"asset", "", 200}, {"revalidate", etag, 304}} {
				b.Run("fs="+src.name+"/req="+tc.name+"/impl="+impl, func(b *testing.B) {
					req := httptest.NewRequest("GET", asset, nil)
					if tc.inm != "" {
						req.Header.Set("If-None-Match", tc.inm)
					}
					b.ReportAllocs()
					for b.Loop() {
						w := &discardWriter{hdr: http.Header{}}
						h.ServeHTTP(w, req)
						if w.status != tc.want && !(w.status == 0 && tc.want == 200) {
							b.Fatalf("status %d", w.status)
						}
					}
				})
			}
		}
	}
}

// serveContentHandler is the baseline, what this package did before: metadata cached, a
// matching If-None-Match answered without opening the file, anything else opened per request and
// sent through http.ServeContent (which seeks, sniffs and copies through a buffer when the file
// is not an *os.File).
func serveContentHandler(fsys fs.FS) http.Handler {
	h := New(fsys, zerolog.Nop())
	start := time.Now()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path[1:]
		m := h.lookup(name)
		if m == nil {
			http.Error(w, "not found", 404)
			return
		}
		hdr := w.Header()
		hdr.Set("Cache-Control", cacheImmutable)
		hdr.Set("ETag", m.variants[encIdentity].etag)
		hdr.Set("X-Content-Type-Options", "nosniff")
		if inm := r.Header.Get("If-None-Match"); inm != "" && etagListMatches(inm, m.variants[encIdentity].etag) {
			hdr.Set("Last-Modified", start.UTC().Format(http.TimeFormat))
			w.WriteHeader(http.StatusNotModified)
			return
		}
		f, err := fsys.Open(name)
		if err != nil {
			http.Error(w, "not found", 404)
			return
		}
		defer f.Close()
		hdr.Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeContent(w, r, name, start, f.(io.ReadSeeker))
	})
}

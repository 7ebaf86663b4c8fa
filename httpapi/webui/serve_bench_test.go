package webui

import (
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"
)

// BenchmarkServe is the handler alone (no network): a hashed asset, and its 304 revalidation.
func BenchmarkServe(b *testing.B) {
	fsys, err := Dir("testdata/dist")
	must(b, err)
	h := New(fsys, zerolog.Nop())
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", asset, nil))
	etag := w.Header().Get("ETag")
	for _, tc := range []struct {
		name, inm string
		want      int
	}{{"asset", "", 200}, {"revalidate", etag, 304}} {
		b.Run("req="+tc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", asset, nil)
			if tc.inm != "" {
				req.Header.Set("If-None-Match", tc.inm)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != tc.want {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

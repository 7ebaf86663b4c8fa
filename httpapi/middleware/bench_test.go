package middleware_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/httpapi/respond"
)

// BenchmarkMiddleware measures what the request-ID, client-IP, access-log, recover and body-limit
// chain costs per request: impl=bare is the chi router alone, impl=chain adds the chain with JSON
// access logging to io.Discard (the encoding work is real; only the write is dropped).
func BenchmarkMiddleware(b *testing.B) {
	handler := func(w http.ResponseWriter, r *http.Request) {
		respond.JSON(w, http.StatusOK, map[string]bool{"ok": true})
	}
	for _, impl := range []string{"bare", "chain"} {
		b.Run("impl="+impl, func(b *testing.B) {
			r := chi.NewRouter()
			if impl == "chain" {
				log := zerolog.New(io.Discard).With().Timestamp().Logger()
				r.Use(middleware.RequestID(log), middleware.ClientIP(nil, false), middleware.AccessLog,
					middleware.Recover, middleware.BodyLimit)
			}
			r.Get("/api/jobs/{id}", handler)
			req := httptest.NewRequest(http.MethodGet, "/api/jobs/42", nil)
			req.RemoteAddr = "127.0.0.1:40000"
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				r.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

// BenchmarkHardening measures the hardening middleware on a static-asset GET: impl=bare is the
// handler alone, impl=hardened adds security headers, the body deadline, the Host allowlist and
// the JSON body rule, as httpapi.New chains them.
func BenchmarkHardening(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	for _, impl := range []string{"bare", "hardened"} {
		b.Run("impl="+impl, func(b *testing.B) {
			var h http.Handler = handler
			if impl == "hardened" {
				allow := middleware.NewHostAllowlist("nas.lan")
				h = middleware.SecurityHeaders(middleware.BodyDeadline(0, 0)(
					middleware.AllowHosts(allow, "/api/health")(middleware.RequireJSONBody(handler))))
			}
			req := httptest.NewRequest(http.MethodGet, "/assets/index-abc.js", nil)
			req.Host = "nas.lan:9876"
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}

// discardWriter reuses one header map, so that the benchmark counts the middleware's
// allocations, not the recorder's.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

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

package middleware

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	chimw "github.com/go-chi/chi/v5/middleware"
	"github.com/rs/zerolog"
)

// AccessLog writes one line per request: method, route pattern, path, status, bytes, duration
// and (from the context logger) request_id. Never bodies, headers, cookies or query strings —
// any of them can carry a secret.
func AccessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := chimw.NewWrapResponseWriter(w, r.ProtoMajor)
		defer func() {
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK // nothing written: net/http answers 200
			}
			route := ""
			if rc := chi.RouteContext(r.Context()); rc != nil {
				route = rc.RoutePattern()
			}
			log := zerolog.Ctx(r.Context())
			ev := log.Info()
			if status >= 500 {
				ev = log.Error()
			}
			ev.Str("method", r.Method).
				Str("route", route).
				Str("path", r.URL.Path).
				Int("status", status).
				Int("bytes", ww.BytesWritten()).
				Dur("duration", time.Since(start)).
				Str("client_ip", GetClient(r).IP.String()).
				Msg("http request")
		}()
		next.ServeHTTP(ww, r)
	})
}

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
//
// It runs on every request, static assets included, so it stays cheap: its ResponseWriter
// wrapper keeps io.ReaderFrom (file bodies still go out with sendfile) and http.Flusher, the
// client address is appended without allocating, and when the level drops the line nothing is
// computed at all.
func AccessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := chimw.NewWrapResponseWriter(w, r.ProtoMajor)
		defer func() {
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK // nothing written: net/http answers 200
			}
			log := zerolog.Ctx(r.Context())
			ev := log.Info()
			if status >= 500 {
				ev = log.Error()
			}
			if ev == nil { // level disabled
				return
			}
			route := ""
			if rc := chi.RouteContext(r.Context()); rc != nil {
				route = rc.RoutePattern()
			}
			var ipBuf [64]byte
			ip := GetClient(r).IP
			ipText := ip.AppendTo(ipBuf[:0])
			if !ip.IsValid() {
				ipText = append(ipText, "invalid IP"...) // what netip.Addr.String says
			}
			ev.Str("method", r.Method).
				Str("route", route).
				Str("path", r.URL.Path).
				Int("status", status).
				Int("bytes", ww.BytesWritten()).
				Dur("duration", time.Since(start)).
				Bytes("client_ip", ipText).
				Msg("http request")
		}()
		next.ServeHTTP(ww, r)
	})
}

package middleware

import (
	"net/http"
	"strings"
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
			path := r.URL.Path
			if len(path) > maxLoggedPath {
				path = strings.ToValidUTF8(path[:maxLoggedPath], "") + "…"
			}
			ev.Str("method", Method(r.Method)).
				Str("route", route).
				Str("path", path).
				Int("status", status).
				Int("bytes", ww.BytesWritten()).
				Dur("duration", time.Since(start)).
				Bytes("client_ip", ipText).
				Msg("http request")
		}()
		next.ServeHTTP(ww, r)
	})
}

// maxLoggedPath bounds the path an access log line keeps: net/http accepts a request line up to
// MaxHeaderBytes (1 MiB), and anyone can send one.
const maxLoggedPath = 2048

// Method names a request's method for logs and the audit log: one of the standard methods, else
// "OTHER". net/http accepts any token as a method, up to MaxHeaderBytes long, from anyone.
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// MatchedRoute is the chi pattern a request matched, "" when it matched none: an empty pattern,
// or only the catch-all of the sub-router it fell into ("/api/*"). Raw paths are anything a
// client sent; patterns are a bounded set. (No route of the Hub is itself a wildcard; one added
// later would read as unmatched too.)
func MatchedRoute(r *http.Request) string {
	rc := chi.RouteContext(r.Context())
	if rc == nil {
		return ""
	}
	if p := rc.RoutePattern(); !strings.HasSuffix(p, "/*") {
		return p
	}
	return ""
}

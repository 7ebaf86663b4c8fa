package middleware

import (
	"net/http"
	"strings"
)

// Body limits: API bodies are small JSON documents; agent routes carry config snapshots and
// ingested runs.
const (
	APIBodyLimit   = 2 << 20
	AgentBodyLimit = 4 << 20
)

// BodyLimit caps request bodies: APIBodyLimit under /api/, AgentBodyLimit under /agent/. Reading
// past the cap fails with *http.MaxBytesError, which respond.Error answers with 413.
func BodyLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/api/"):
			r.Body = http.MaxBytesReader(w, r.Body, APIBodyLimit)
		case strings.HasPrefix(r.URL.Path, "/agent/"):
			r.Body = http.MaxBytesReader(w, r.Body, AgentBodyLimit)
		}
		next.ServeHTTP(w, r)
	})
}

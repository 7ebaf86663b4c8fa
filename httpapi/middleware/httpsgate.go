package middleware

import (
	"net/http"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

// RequireHTTPS refuses plain-HTTP requests from other machines with 400 insecure_not_allowed: a
// request passes when it counts as HTTPS (a trusted proxy says so), when the Hub runs with
// --insecure-http, or when its TCP peer is on this machine. The Hub never terminates TLS, so
// without this a browser on the network would send its password and session cookie in clear.
//
// Paths in open (exact matches) pass regardless: monitors and the setup page's first probe need
// them, and they carry nothing secret. Everything else is gated, including the web UI and
// /agent/*, so a client learns to use HTTPS before it ever sends a credential.
func RequireHTTPS(insecure bool, open ...string) func(http.Handler) http.Handler {
	openSet := make(map[string]bool, len(open))
	for _, p := range open {
		openSet[p] = true
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := GetClient(r)
			if insecure || c.HTTPS || c.Loopback() || openSet[r.URL.Path] {
				next.ServeHTTP(w, r)
				return
			}
			respond.Error(w, r, respond.BadRequest("insecure_not_allowed",
				"this Hub accepts plain HTTP only from this machine: use HTTPS through a trusted reverse proxy, or start it with --insecure-http"))
		})
	}
}

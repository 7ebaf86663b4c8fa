package middleware

import (
	"net/http"
	"strings"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

// RequireJSONBody answers 415 unsupported_media_type to a request under /api/ or /agent/ that
// carries a body whose Content-Type is not application/json (parameters such as charset are
// fine). Every such route reads JSON; insisting on the type makes a cross-site form or a
// no-cors fetch (which can only send text/plain, form-urlencoded or multipart without a CORS
// preflight the Hub never grants) unable to reach a handler. Body-less requests (actions such as
// POST …/cancel, GETs, WebSocket upgrades) pass whatever their Content-Type.
func RequireJSONBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody &&
			(strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/agent/")) &&
			!respond.IsJSONContentType(r.Header.Get("Content-Type")) {
			respond.Error(w, r, respond.New(http.StatusUnsupportedMediaType, "unsupported_media_type",
				"request body must be JSON sent with Content-Type: application/json"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

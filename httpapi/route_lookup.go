package httpapi

import (
	"strings"

	"github.com/go-chi/chi/v5"
)

// findRoute is the route pattern of the root router that method and path reach, and its URL
// parameters, found again from the top: a middleware that runs before a mounted sub-router has
// matched (or refuses the request before routing) sees no complete pattern of its own. The
// pattern is "" when nothing matches or only a sub-router's catch-all ("/api/*") does; no route
// of the Hub is itself a wildcard.
func (s *Server) findRoute(method, path string) (string, chi.RouteParams) {
	if s.mux == nil {
		return "", chi.RouteParams{}
	}
	rc := chi.NewRouteContext()
	p := s.mux.Find(rc, method, path)
	if strings.HasSuffix(p, "/*") {
		p = ""
	}
	return p, rc.URLParams
}

package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	chimw "github.com/go-chi/chi/v5/middleware"

	"github.com/bastion-backup/bastion/httpapi/middleware"
)

// RouteUnmatched is the route label of requests that matched no route (unknown paths, the web
// UI's files served by the fallback handler): raw paths never become label values.
const RouteUnmatched = "unmatched"

// Middleware observes each request's duration under its chi route pattern, read after the router
// has matched it. Register it on the root router, before panic recovery so that a panic is seen
// as the 500 it becomes. WebSocket upgrades are left out: they last as long as the connection.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		ww := chimw.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		code := ww.Status()
		if code == 0 {
			code = http.StatusOK
		}
		m.httpDuration.WithLabelValues(routeOf(r), strconv.Itoa(code)).Observe(time.Since(start).Seconds())
	})
}

// routeOf is the pattern chi matched, RouteUnmatched for none (middleware.MatchedRoute).
func routeOf(r *http.Request) string {
	if p := middleware.MatchedRoute(r); p != "" {
		return p
	}
	return RouteUnmatched
}

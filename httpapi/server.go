// Package httpapi is the Hub's HTTP surface: the chi router, its middleware chain, one file per
// API resource, the static web UI and the agent socket.
package httpapi

import (
	"io/fs"
	"net/http"
	"net/netip"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/httpapi/webui"
	"github.com/bastion-backup/bastion/storage"
)

// Config is everything the HTTP layer needs from the Hub.
type Config struct {
	Logger         zerolog.Logger
	DB             *storage.DB
	UI             fs.FS // the built web app; nil serves no UI
	Version        string
	BuildTimeUnix  int64 // 0 when unknown
	HubTimezone    string
	InsecureHTTP   bool
	TrustedProxies []netip.Prefix
	DebugErrors    bool
}

// Server holds the handlers' dependencies.
type Server struct {
	cfg Config
	log zerolog.Logger
	db  *storage.DB
}

// New builds the Hub's HTTP handler.
func New(cfg Config) http.Handler {
	s := &Server{cfg: cfg, log: cfg.Logger.With().Str("component", "http").Logger(), db: cfg.DB}
	r := chi.NewRouter()
	r.Use(
		middleware.RequestID(s.log),
		middleware.ClientIP(cfg.TrustedProxies, cfg.InsecureHTTP),
		middleware.AccessLog,
		middleware.Recover,
		middleware.BodyLimit,
	)
	if cfg.DebugErrors {
		r.Use(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				next.ServeHTTP(w, r.WithContext(respond.WithDebugErrors(r.Context())))
			})
		})
	}

	r.Route("/api", func(r chi.Router) {
		r.NotFound(func(w http.ResponseWriter, r *http.Request) {
			respond.Error(w, r, respond.NotFound("not_found", "no such API endpoint"))
		})
		r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
			respond.Error(w, r, respond.New(http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this endpoint"))
		})
		s.systemRoutes(r)
	})

	if cfg.UI != nil {
		ui := webui.New(cfg.UI, s.log)
		r.NotFound(func(w http.ResponseWriter, req *http.Request) {
			if strings.HasPrefix(req.URL.Path, "/agent/") {
				respond.Error(w, req, respond.NotFound("not_found", "no such agent endpoint"))
				return
			}
			ui.ServeHTTP(w, req)
		})
	}
	return r
}

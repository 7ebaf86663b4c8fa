package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

// systemRoutes are open to everyone, over plain HTTP too: monitors and the setup page need them.
func (s *Server) systemRoutes(r chi.Router) {
	r.Get("/health", s.health)
	r.Get("/ready", s.ready)
	r.Get("/system", s.system)
	r.Get("/setup/status", s.setupStatus)
	r.Get("/control-plane/public-metadata", s.publicMetadata)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	respond.JSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		respond.Error(w, r, respond.New(http.StatusServiceUnavailable, "not_ready", "database is not usable").Cause(err))
		return
	}
	respond.JSON(w, http.StatusOK, map[string]bool{"ok": true})
}

type systemInfo struct {
	Version       string `json:"version"`
	BuildTimeUnix *int64 `json:"build_time_unix"`
	InsecureHTTP  bool   `json:"insecure_http"`
	HubTimezone   string `json:"hub_timezone"`
}

func (s *Server) system(w http.ResponseWriter, r *http.Request) {
	info := systemInfo{Version: s.cfg.Version, InsecureHTTP: s.cfg.InsecureHTTP, HubTimezone: s.cfg.HubTimezone}
	if s.cfg.BuildTimeUnix > 0 {
		info.BuildTimeUnix = &s.cfg.BuildTimeUnix
	}
	respond.JSON(w, http.StatusOK, info)
}

func (s *Server) setupStatus(w http.ResponseWriter, r *http.Request) {
	n, err := s.db.Reader().CountUsers(r.Context())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, map[string]bool{"needs_setup": n == 0})
}

// publicMetadata is what a login page or a monitor may learn before anyone logs in: the product,
// its version and whether setup is pending — the same facts /api/system and /api/setup/status
// already give away, and no secret. A logged-in caller learns the public base URL too.
func (s *Server) publicMetadata(w http.ResponseWriter, r *http.Request) {
	n, err := s.db.Reader().CountUsers(r.Context())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out := map[string]any{"product_name": "Bastion", "version": s.cfg.Version, "needs_setup": n == 0}
	// A logged-in caller also gets what the original serves here (behind a session there): where
	// users reach the Hub, which setting gave it, and whether agent install commands can be
	// generated from it. Anonymous callers keep the facts above only.
	if _, _, err := s.authenticate(r); err == nil {
		var base any
		if s.cfg.PublicBaseURL != "" {
			base = s.cfg.PublicBaseURL
		}
		source := "default"
		if s.cfg.Runtime != nil {
			if f, ok := s.cfg.Runtime.Fields["public_base_url"]; ok && f.Source != "" {
				source = f.Source
			}
		}
		out["public_base_url"], out["source"], out["command_generation_ready"] = base, source, s.cfg.PublicBaseURL != ""
	}
	respond.JSON(w, http.StatusOK, out)
}

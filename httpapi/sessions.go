package httpapi

import (
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/names"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// sessionListRoutes: the logged-in user's own sessions. A session is named by its public id, never by
// the cookie or its hash.
func (s *Server) sessionListRoutes(r chi.Router) {
	r.Get("/sessions", s.listSessions)
	r.Delete("/sessions/{id}", s.revokeSession)
}

type sessionView struct {
	ID         string `json:"id"`
	CreatedAt  int64  `json:"created_at"`
	ExpiresAt  int64  `json:"expires_at"`
	LastSeenAt int64  `json:"last_seen_at"`
	ClientIP   string `json:"client_ip"`
	UserAgent  string `json:"user_agent"`
	Current    bool   `json:"current"`
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	sessions, err := s.db.Reader().ListSessions(r.Context(), UserID(r), s.now().Unix())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	current, _ := r.Context().Value(sessionPublicIDKey).(string)
	items := make([]sessionView, 0, len(sessions))
	for _, ss := range sessions {
		items = append(items, sessionView{
			ID: ss.PublicID, CreatedAt: ss.CreatedAt, ExpiresAt: ss.ExpiresAt, LastSeenAt: ss.LastSeenAt,
			ClientIP: ss.ClientIP, UserAgent: ss.UserAgent, Current: ss.PublicID == current,
		})
	}
	w.Header().Set("Cache-Control", "no-store")
	respond.JSON(w, http.StatusOK, map[string]any{"items": items, "max_sessions": MaxSessionsPerUser})
}

// revokeSession ends one of the user's sessions. Revoking the current one logs out: the cookie is
// cleared in the same answer.
func (s *Server) revokeSession(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := s.db.Writer().DeleteUserSession(r.Context(), UserID(r), id); errors.Is(err, storage.ErrNotFound) {
		respond.Error(w, r, respond.NotFound("session_not_found", "no such session"))
		return
	} else if err != nil {
		respond.Error(w, r, err)
		return
	}
	s.signOuts.happened()
	current, _ := r.Context().Value(sessionPublicIDKey).(string)
	if id == current {
		clearSessionCookie(w, r)
	}
	zerolog.Ctx(r.Context()).Info().Bool("current", id == current).Msg("session revoked")
	respond.NoContent(w)
}

// cleanUserAgent keeps a User-Agent displayable: valid UTF-8, no control or bidi characters
// (replaced by U+FFFD) and at most maxUserAgentLen characters. It is a hint, not an identity, so
// it is repaired rather than refused.
func cleanUserAgent(ua string) string {
	ua = strings.ToValidUTF8(ua, "\uFFFD")
	var b strings.Builder
	n := 0
	for _, c := range ua {
		if n == maxUserAgentLen {
			break
		}
		if names.Forbidden(c) {
			c = utf8.RuneError
		}
		b.WriteRune(c)
		n++
	}
	return strings.TrimSpace(b.String())
}

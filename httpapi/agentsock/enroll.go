package agentsock

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/httpapi/audit"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// Routes mounts the agent endpoints (/agent/enroll, /agent/ws, /agent/runs/ingest).
func (h *Hub) Routes(r chi.Router) {
	r.Post("/agent/enroll", h.enroll)
	r.Get("/agent/ws", h.ServeWS)
	r.Post("/agent/runs/ingest", h.ingest)
}

// EnrollRequest is the body of POST /agent/enroll.
type EnrollRequest struct {
	Token string  `json:"token"`
	Name  *string `json:"name"`
}

// EnrollResponse is its answer; the key is shown this once.
type EnrollResponse struct {
	AgentID  string `json:"agent_id"`
	AgentKey string `json:"agent_key"`
}

func (h *Hub) enroll(w http.ResponseWriter, r *http.Request) {
	audit.From(r).Object("agents", "") // the id once enrolled
	if err := h.gate(r); err != nil {
		respond.Error(w, r, err)
		return
	}
	var req EnrollRequest
	if err := respond.DecodeJSON(r, &req); err != nil {
		respond.Error(w, r, err)
		return
	}
	hash, ok := protocol.HashToken(req.Token)
	if !ok {
		respond.Error(w, r, respond.Unauthorized("invalid_token", "enrollment token is not valid").Reason("invalid_format"))
		return
	}
	// An absent or blank name is no name (the agent is shown by its id); anything else must be a
	// valid display name.
	var name *string
	if req.Name != nil && strings.TrimSpace(*req.Name) != "" {
		n, err := respond.DisplayName("name", *req.Name)
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		name = &n
	}
	id, key := protocol.NewUUID(), protocol.NewToken()
	keyHash, _ := protocol.HashToken(key)
	now := h.clock.Now().Unix()
	var tokenErr error
	err := h.db.Write(r.Context(), func(q storage.Q) error {
		tokenErr = q.ConsumeEnrollmentToken(r.Context(), hash, now)
		switch {
		case errors.Is(tokenErr, storage.ErrTokenExpired):
			return nil // commit the deletion of the expired token
		case tokenErr != nil:
			return tokenErr
		}
		return q.InsertAgent(r.Context(), storage.Agent{ID: id, Name: name, KeyHash: keyHash, CreatedAt: now, UpdatedAt: now})
	})
	if tokenErr != nil {
		err = tokenErr
	}
	switch {
	case errors.Is(err, storage.ErrTokenExpired):
		respond.Error(w, r, respond.Unauthorized("expired_token", "enrollment token has expired"))
		return
	case errors.Is(err, storage.ErrTokenExhausted):
		respond.Error(w, r, respond.Unauthorized("invalid_token", "enrollment token has no uses left").Reason("exhausted"))
		return
	case errors.Is(err, storage.ErrTokenInvalid):
		respond.Error(w, r, respond.Unauthorized("invalid_token", "enrollment token is not valid").Reason("not_found"))
		return
	case err != nil:
		respond.Error(w, r, err)
		return
	}
	audit.From(r).Agent(id)
	zerolog.Ctx(r.Context()).Info().Str("agent_id", id).Msg("agent enrolled")
	respond.JSON(w, http.StatusOK, EnrollResponse{AgentID: id, AgentKey: key})
}

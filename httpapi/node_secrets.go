package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// nodeSecretRoutes serve WebDAV credentials per node: "hub" is the Hub's own (as
// /api/secrets/webdav), an agent id is that agent's scope, which its jobs, its webdav_list and its
// restores from WebDAV use. A change in an agent's scope is pushed to the agent at once (secrets
// snapshot, then config snapshot); an offline agent gets both when it connects.
func (s *Server) nodeSecretRoutes(r chi.Router) {
	r.Route("/nodes/{node_id}/secrets/webdav", func(r chi.Router) {
		r.Get("/", s.listNodeSecrets)
		r.Get("/{name}", s.getNodeSecret)
		r.Put("/{name}", s.putNodeSecret)
		r.Delete("/{name}", s.deleteNodeSecret)
	})
}

// secretNode resolves the node of a node-scoped secret request: hub, or an existing agent.
func (s *Server) secretNode(w http.ResponseWriter, r *http.Request) (string, bool) {
	if s.cfg.Secrets == nil {
		respond.Error(w, r, respond.New(http.StatusServiceUnavailable, "secrets_unavailable", "the secret store is not configured"))
		return "", false
	}
	node := pathParam(r, "node_id")
	if node == secrets.HubNode {
		return node, true
	}
	if _, err := s.db.Reader().GetAgent(r.Context(), node); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			respond.Error(w, r, respond.NotFound("node_not_found", "no such node"))
		} else {
			respond.Error(w, r, err)
		}
		return "", false
	}
	return node, true
}

func (s *Server) nodeSecretName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := pathParam(r, "name")
	if err := secrets.ValidateName(name); err != nil {
		respond.Error(w, r, validationError(err))
		return "", false
	}
	return name, true
}

func (s *Server) listNodeSecrets(w http.ResponseWriter, r *http.Request) {
	node, ok := s.secretNode(w, r)
	if !ok {
		return
	}
	list, err := s.cfg.Secrets.List(r.Context(), node, secrets.KindWebDAV)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, list)
}

func (s *Server) getNodeSecret(w http.ResponseWriter, r *http.Request) {
	node, ok := s.secretNode(w, r)
	if !ok {
		return
	}
	name, ok := s.nodeSecretName(w, r)
	if !ok {
		return
	}
	raw, err := s.cfg.Secrets.Get(r.Context(), node, secrets.KindWebDAV, name)
	if err != nil {
		respond.Error(w, r, secretError(err))
		return
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
		respond.Error(w, r, respond.New(http.StatusInternalServerError, "secret_undecryptable",
			"the stored payload of webdav/"+name+" is not a JSON object"))
		return
	}
	doc["name"], _ = json.Marshal(name)
	w.Header().Set("Cache-Control", "no-store")
	respond.JSON(w, http.StatusOK, doc)
}

func (s *Server) putNodeSecret(w http.ResponseWriter, r *http.Request) {
	node, ok := s.secretNode(w, r)
	if !ok {
		return
	}
	name, ok := s.nodeSecretName(w, r)
	if !ok {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		respond.Error(w, r, respond.BadRequest("invalid_json", "request body must be application/json").Reason("content_type"))
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		respond.Error(w, r, err) // over the body limit: 413
		return
	}
	payload, err := secrets.DecodePayload(secrets.KindWebDAV, body)
	if err != nil {
		respond.Error(w, r, validationError(err))
		return
	}
	canonical, err := json.Marshal(payload)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if err := s.cfg.Secrets.Put(r.Context(), node, secrets.KindWebDAV, name, canonical); err != nil {
		respond.Error(w, r, err)
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("node_id", node).Str("secret_kind", secrets.KindWebDAV).Str("secret_name", name).Msg("secret saved")
	s.pushNodeSecrets(r, node)
	respond.NoContent(w)
}

func (s *Server) deleteNodeSecret(w http.ResponseWriter, r *http.Request) {
	node, ok := s.secretNode(w, r)
	if !ok {
		return
	}
	name, ok := s.nodeSecretName(w, r)
	if !ok {
		return
	}
	if err := s.cfg.Secrets.Delete(r.Context(), node, secrets.KindWebDAV, name); err != nil {
		respond.Error(w, r, secretError(err))
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("node_id", node).Str("secret_kind", secrets.KindWebDAV).Str("secret_name", name).Msg("secret deleted")
	s.pushNodeSecrets(r, node)
	respond.NoContent(w)
}

// pushNodeSecrets sends an agent its new secrets snapshot, then its config snapshot (the
// original pushed only the config, leaving the agent's credentials stale until it reconnected).
// A failure is logged: the agent gets both on its next connection anyway.
func (s *Server) pushNodeSecrets(r *http.Request, node string) {
	if node == secrets.HubNode || s.cfg.Agents == nil {
		return
	}
	log := zerolog.Ctx(r.Context())
	if err := s.cfg.Agents.PushSecrets(r.Context(), node); err != nil {
		log.Warn().Err(err).Str("agent_id", node).Msg("push secrets to the agent; it gets them when it reconnects")
	}
	if _, err := s.cfg.Agents.SyncConfig(r.Context(), node); err != nil {
		log.Warn().Err(err).Str("agent_id", node).Msg("push config to the agent; it gets it when it reconnects")
	}
}

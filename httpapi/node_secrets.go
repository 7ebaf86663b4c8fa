package httpapi

import (
	"context"
	"errors"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// nodeSecretRoutes serve target credentials (the secret kinds of engine/targets/all: webdav) per
// node: "hub" is the Hub's own (as /api/secrets/{kind}), an agent id is that agent's scope,
// which its jobs, its webdav_list and its restores use. A change in an agent's scope is pushed to the agent at once (secrets
// snapshot, then config snapshot); an offline agent gets both when it connects.
func (s *Server) nodeSecretRoutes(r chi.Router) {
	r.Route("/nodes/{node_id}/secrets/{kind}", func(r chi.Router) {
		r.Get("/", s.listNodeSecrets)
		r.Get("/{name}", s.getNodeSecret)
		r.Put("/{name}", s.putNodeSecret)
		r.Delete("/{name}", s.deleteNodeSecret)
	})
}

// secretNode resolves the node and kind of a node-scoped secret request: hub, or an existing
// agent; a target driver's secret kind.
func (s *Server) secretNode(w http.ResponseWriter, r *http.Request) (string, string, bool) {
	if s.cfg.Secrets == nil {
		respond.Error(w, r, respond.New(http.StatusServiceUnavailable, "secrets_unavailable", "the secret store is not configured"))
		return "", "", false
	}
	kind := pathParam(r, "kind")
	if !isTargetSecretKind(kind) {
		respond.Error(w, r, respond.NotFound("unknown_secret_kind", "unknown secret kind for a node: use "+strings.Join(all.Registry.SecretKinds(), ", ")).Field("kind"))
		return "", "", false
	}
	node := pathParam(r, "node_id")
	if node == secrets.HubNode {
		return node, kind, true
	}
	if _, err := s.db.Reader().GetAgent(r.Context(), node); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			respond.Error(w, r, respond.NotFound("node_not_found", "no such node"))
		} else {
			respond.Error(w, r, err)
		}
		return "", "", false
	}
	return node, kind, true
}

// nodeSecretTarget resolves the node and secret name of a node-scoped request.
func (s *Server) nodeSecretTarget(w http.ResponseWriter, r *http.Request) (node, kind, name string, ok bool) {
	if node, kind, ok = s.secretNode(w, r); !ok {
		return "", "", "", false
	}
	name = pathParam(r, "name")
	if err := secrets.ValidateName(name); err != nil {
		respond.Error(w, r, validationError(err))
		return "", "", "", false
	}
	return node, kind, name, true
}

func (s *Server) listNodeSecrets(w http.ResponseWriter, r *http.Request) {
	if node, kind, ok := s.secretNode(w, r); ok {
		s.answerSecretList(w, r, node, kind)
	}
}

func (s *Server) getNodeSecret(w http.ResponseWriter, r *http.Request) {
	if node, kind, name, ok := s.nodeSecretTarget(w, r); ok {
		s.answerSecret(w, r, node, kind, name)
	}
}

func (s *Server) putNodeSecret(w http.ResponseWriter, r *http.Request) {
	node, kind, name, ok := s.nodeSecretTarget(w, r)
	if ok && s.storeSecret(w, r, node, kind, name) {
		s.pushNodeSecrets(r.Context(), node)
		respond.NoContent(w)
	}
}

func (s *Server) deleteNodeSecret(w http.ResponseWriter, r *http.Request) {
	node, kind, name, ok := s.nodeSecretTarget(w, r)
	if ok && s.removeSecret(w, r, node, kind, name) {
		s.pushNodeSecrets(r.Context(), node)
		respond.NoContent(w)
	}
}

// pushNodeSecrets sends an agent its new secrets snapshot, then its config snapshot (the
// original pushed only the config, leaving the agent's credentials stale until it reconnected).
// A failure is logged: the agent gets both on its next connection anyway.
func (s *Server) pushNodeSecrets(ctx context.Context, node string) {
	if node == secrets.HubNode || s.cfg.Agents == nil {
		return
	}
	log := zerolog.Ctx(ctx)
	if err := s.cfg.Agents.PushSecrets(ctx, node); err != nil {
		log.Warn().Err(err).Str("agent_id", node).Msg("push secrets to the agent; it gets them when it reconnects")
	}
	if _, err := s.cfg.Agents.SyncConfig(ctx, node); err != nil {
		log.Warn().Err(err).Str("agent_id", node).Msg("push config to the agent; it gets it when it reconnects")
	}
}

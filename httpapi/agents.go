package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// agentRoutes is the agents API: enrollment tokens, the fleet list, revoke, key rotation,
// labels and config sync.
func (s *Server) agentRoutes(r chi.Router) {
	r.Post("/agents/enrollment-tokens", s.createEnrollmentToken)
	r.Get("/agents", s.listAgents)
	r.Get("/agents/labels", s.listAgentLabels)
	r.Get("/agents/{id}", s.getAgent)
	r.Post("/agents/{id}/revoke", s.revokeAgent)
	r.Post("/agents/{id}/rotate-key", s.rotateAgentKey)
	r.Post("/agents/{id}/sync-config-now", s.syncAgentConfig)
	r.Put("/agents/{id}/labels", s.setAgentLabels)
	r.Post("/agents/{id}/labels/add", s.addAgentLabels)
	r.Post("/agents/{id}/labels/remove", s.removeAgentLabels)
}

const (
	defaultTokenTTL = 3600
	maxTokenTTL     = 30 * 86400
	maxLabelLen     = 32
	maxLabels       = 64
)

var labelRe = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

type enrollmentTokenRequest struct {
	TTLSeconds    *int64 `json:"ttl_seconds"`
	RemainingUses *int64 `json:"remaining_uses"`
}

type enrollmentTokenResponse struct {
	Token         string `json:"token"`
	ExpiresAt     int64  `json:"expires_at"`
	RemainingUses *int64 `json:"remaining_uses"`
}

func (s *Server) createEnrollmentToken(w http.ResponseWriter, r *http.Request) {
	var req enrollmentTokenRequest
	if err := respond.DecodeJSON(r, &req); err != nil {
		respond.Error(w, r, err)
		return
	}
	ttl := int64(defaultTokenTTL)
	if req.TTLSeconds != nil {
		ttl = *req.TTLSeconds
	}
	if ttl < 1 || ttl > maxTokenTTL {
		respond.Error(w, r, respond.BadRequest("invalid_ttl", "ttl_seconds must be between 1 and 2592000 (30 days)").
			Field("ttl_seconds").Reason("out_of_range").Param("min", 1).Param("max", maxTokenTTL))
		return
	}
	if req.RemainingUses != nil && (*req.RemainingUses < 1 || *req.RemainingUses > 1_000_000) {
		respond.Error(w, r, respond.BadRequest("invalid_remaining_uses", "remaining_uses must be at least 1, or null for unlimited").
			Field("remaining_uses").Reason("out_of_range").Param("min", 1))
		return
	}
	tok := protocol.NewToken()
	hash, _ := protocol.HashToken(tok)
	now := s.now().Unix()
	if err := s.db.Writer().InsertEnrollmentToken(r.Context(), storage.EnrollmentToken{
		TokenHash: hash, CreatedAt: now, ExpiresAt: now + ttl, RemainingUses: req.RemainingUses,
	}); err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, enrollmentTokenResponse{Token: tok, ExpiresAt: now + ttl, RemainingUses: req.RemainingUses})
}

// agentView is one agent in the API.
type agentView struct {
	ID                      string   `json:"id"`
	Name                    *string  `json:"name"`
	Revoked                 bool     `json:"revoked"`
	RevokedAt               *int64   `json:"revoked_at"`
	LastSeenAt              *int64   `json:"last_seen_at"`
	Online                  bool     `json:"online"`
	Connected               bool     `json:"connected"`
	Labels                  []string `json:"labels"`
	ConfigSyncStatus        string   `json:"config_sync_status"` // offline | error | synced | pending
	DesiredConfigSnapshotID *string  `json:"desired_config_snapshot_id"`
	AppliedConfigSnapshotID *string  `json:"applied_config_snapshot_id"`
	LastConfigSyncAttemptAt *int64   `json:"last_config_sync_attempt_at"`
	LastConfigSyncErrorKind *string  `json:"last_config_sync_error_kind"`
	LastConfigSyncError     *string  `json:"last_config_sync_error"`
	LastConfigSyncErrorAt   *int64   `json:"last_config_sync_error_at"`
	CreatedAt               int64    `json:"created_at"`
}

type agentDetail struct {
	agentView
	Capabilities json.RawMessage `json:"capabilities"` // the agent's last hello
}

func (s *Server) viewAgent(a storage.Agent, now int64) agentView {
	v := agentView{
		ID: a.ID, Name: a.Name, Revoked: a.RevokedAt != nil, RevokedAt: a.RevokedAt, LastSeenAt: a.LastSeenAt,
		Labels: a.Labels, DesiredConfigSnapshotID: a.DesiredConfigSnapshotID, AppliedConfigSnapshotID: a.AppliedConfigSnapshotID,
		LastConfigSyncAttemptAt: a.LastConfigSyncAttemptAt, LastConfigSyncErrorKind: a.LastConfigSyncErrorKind,
		LastConfigSyncError: a.LastConfigSyncError, LastConfigSyncErrorAt: a.LastConfigSyncErrorAt, CreatedAt: a.CreatedAt,
	}
	if v.Labels == nil {
		v.Labels = []string{}
	}
	v.Online = a.RevokedAt == nil && a.LastSeenAt != nil && *a.LastSeenAt >= now-int64(agentsock.OnlineWindow.Seconds())
	if s.cfg.Agents != nil {
		v.Connected = s.cfg.Agents.Connected(a.ID)
	}
	switch {
	case !v.Online:
		v.ConfigSyncStatus = "offline"
	case a.LastConfigSyncErrorKind != nil:
		v.ConfigSyncStatus = "error"
	case a.DesiredConfigSnapshotID != nil && a.AppliedConfigSnapshotID != nil && *a.DesiredConfigSnapshotID == *a.AppliedConfigSnapshotID:
		v.ConfigSyncStatus = "synced"
	default:
		v.ConfigSyncStatus = "pending"
	}
	return v
}

type page[T any] struct {
	Items    []T `json:"items"`
	Page     int `json:"page"`
	PageSize int `json:"page_size"`
	Total    int `json:"total"`
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) {
	pg, err := readPage(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	f, err := readAgentFilter(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	agents, err := s.db.Reader().ListAgents(r.Context())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	now := s.now().Unix()
	items := []agentView{}
	for _, a := range agents {
		if v := s.viewAgent(a, now); f.match(a, v) {
			items = append(items, v)
		}
	}
	out := page[agentView]{Items: items, Page: 1, PageSize: len(items), Total: len(items)}
	if pg.paged {
		start := min(pg.offset(), len(items))
		out = page[agentView]{Items: items[start:min(start+pg.size, len(items))], Page: pg.page, PageSize: pg.size, Total: len(items)}
	}
	respond.JSON(w, http.StatusOK, out)
}

// agentFilter is the agents and fleet lists' query: status=all|online|offline|revoked,
// labels[] with labels_mode=and|or, and q (a piece of the id or name, any case).
type agentFilter struct {
	status string
	labels []string
	anyOf  bool
	search string
}

func readAgentFilter(r *http.Request) (agentFilter, error) {
	q := r.URL.Query()
	f := agentFilter{status: q.Get("status"), labels: append(q["labels[]"], q["labels"]...),
		search: strings.ToLower(strings.TrimSpace(q.Get("q")))}
	switch f.status {
	case "", "all", "online", "offline", "revoked":
	default:
		return f, respond.BadRequest("invalid_status", "status must be all, online, offline or revoked").Field("status")
	}
	switch q.Get("labels_mode") {
	case "", "and":
	case "or":
		f.anyOf = true
	default:
		return f, respond.BadRequest("invalid_labels_mode", "labels_mode must be and or or").Field("labels_mode")
	}
	return f, nil
}

func (f agentFilter) match(a storage.Agent, v agentView) bool {
	switch f.status {
	case "online":
		if !v.Online {
			return false
		}
	case "offline":
		if v.Online || v.Revoked {
			return false
		}
	case "revoked":
		if !v.Revoked {
			return false
		}
	}
	if f.search != "" && !strings.Contains(strings.ToLower(a.ID), f.search) && (a.Name == nil || !strings.Contains(strings.ToLower(*a.Name), f.search)) {
		return false
	}
	return labelsMatch(a.Labels, f.labels, f.anyOf)
}

func labelsMatch(have, want []string, any bool) bool {
	if len(want) == 0 {
		return true
	}
	for _, l := range want {
		found := slices.Contains(have, l)
		if any && found {
			return true
		}
		if !any && !found {
			return false
		}
	}
	return !any
}

func (s *Server) listAgentLabels(w http.ResponseWriter, r *http.Request) {
	counts, err := s.db.Reader().ListAgentLabelCounts(r.Context())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	type item struct {
		Label string `json:"label"`
		Count int64  `json:"count"`
	}
	out := make([]item, 0, len(counts))
	for _, c := range counts {
		out = append(out, item{c.Label, c.Count})
	}
	respond.JSON(w, http.StatusOK, out)
}

func (s *Server) loadAgent(w http.ResponseWriter, r *http.Request) (storage.Agent, bool) {
	id := chi.URLParam(r, "id")
	a, err := s.db.Reader().GetAgent(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		respond.Error(w, r, respond.NotFound("agent_not_found", "no such agent"))
		return a, false
	}
	if err != nil {
		respond.Error(w, r, err)
		return a, false
	}
	return a, true
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request) {
	a, ok := s.loadAgent(w, r)
	if !ok {
		return
	}
	respond.JSON(w, http.StatusOK, agentDetail{agentView: s.viewAgent(a, s.now().Unix()), Capabilities: rawPtr(a.CapabilitiesJSON)})
}

func (s *Server) revokeAgent(w http.ResponseWriter, r *http.Request) {
	a, ok := s.loadAgent(w, r)
	if !ok {
		return
	}
	var err error
	if s.cfg.Agents != nil {
		// Also fails what the agent still owes (queued runs, open tasks) and closes its socket.
		err = s.cfg.Agents.Revoke(r.Context(), a.ID)
	} else {
		err = s.db.Writer().RevokeAgent(r.Context(), a.ID, s.now().Unix())
	}
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("agent_id", a.ID).Msg("agent revoked")
	respond.NoContent(w)
}

func (s *Server) rotateAgentKey(w http.ResponseWriter, r *http.Request) {
	a, ok := s.loadAgent(w, r)
	if !ok {
		return
	}
	key := protocol.NewToken()
	hash, _ := protocol.HashToken(key)
	err := s.db.Writer().RotateAgentKey(r.Context(), a.ID, hash, s.now().Unix())
	if errors.Is(err, storage.ErrAgentRevoked) {
		respond.Error(w, r, respond.Conflict("agent_revoked", "a revoked agent's key cannot be rotated"))
		return
	}
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if s.cfg.Agents != nil {
		s.cfg.Agents.Disconnect(a.ID, protocol.CloseKeyRotated, "key rotated")
	}
	zerolog.Ctx(r.Context()).Info().Str("agent_id", a.ID).Msg("agent key rotated")
	respond.JSON(w, http.StatusOK, map[string]string{"agent_id": a.ID, "agent_key": key})
}

func (s *Server) syncAgentConfig(w http.ResponseWriter, r *http.Request) {
	a, ok := s.loadAgent(w, r)
	if !ok {
		return
	}
	outcome, err := s.syncConfig(r.Context(), a.ID)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, map[string]string{"outcome": outcome})
}

// syncConfig records the agent's desired config and sends it if the agent is connected: the
// work of sync-config-now, for one agent or each of a bulk operation's.
func (s *Server) syncConfig(ctx context.Context, agentID string) (string, error) {
	if s.cfg.Agents == nil {
		return agentsock.SyncPendingOffline, nil
	}
	return s.cfg.Agents.SyncConfig(ctx, agentID)
}

type labelsRequest struct {
	Labels []string `json:"labels"`
}

// labelChange is one of the label edits: set, add or remove. Bulk operations apply add and
// remove to each agent they select.
type labelChange func(ctx context.Context, q storage.Q, id string, labels []string, now int64) error

func setLabels(ctx context.Context, q storage.Q, id string, labels []string, now int64) error {
	return q.SetAgentLabels(ctx, id, labels, now)
}

func addLabels(ctx context.Context, q storage.Q, id string, labels []string, now int64) error {
	return q.AddAgentLabels(ctx, id, labels, now)
}

func removeLabels(ctx context.Context, q storage.Q, id string, labels []string, _ int64) error {
	return q.RemoveAgentLabels(ctx, id, labels)
}

func (s *Server) setAgentLabels(w http.ResponseWriter, r *http.Request) {
	s.changeLabels(w, r, setLabels)
}

func (s *Server) addAgentLabels(w http.ResponseWriter, r *http.Request) {
	s.changeLabels(w, r, addLabels)
}

func (s *Server) removeAgentLabels(w http.ResponseWriter, r *http.Request) {
	s.changeLabels(w, r, removeLabels)
}

// changeLabels validates the labels, applies change and answers 204.
func (s *Server) changeLabels(w http.ResponseWriter, r *http.Request, change labelChange) {
	a, ok := s.loadAgent(w, r)
	if !ok {
		return
	}
	var req labelsRequest
	if err := respond.DecodeJSON(r, &req); err != nil {
		respond.Error(w, r, err)
		return
	}
	labels, err := normalizeLabels(req.Labels, "labels")
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if err := s.applyLabels(r.Context(), a.ID, labels, change); err != nil {
		respond.Error(w, r, err)
		return
	}
	// 204 as in the original, whose client reads no body; GET /api/agents/{id} has the labels.
	w.WriteHeader(http.StatusNoContent)
}

// normalizeLabels checks labels (at most 64; each trimmed, lower-cased, 1 to 32 characters of
// [a-z0-9_-]) and returns them deduplicated and sorted. field names the list in errors.
func normalizeLabels(raw []string, field string) ([]string, error) {
	if len(raw) > maxLabels {
		return nil, respond.BadRequest("invalid_labels", "too many labels").Field(field).Reason("too_many").Param("max", maxLabels)
	}
	labels := make([]string, 0, len(raw))
	for i, l := range raw {
		l = strings.ToLower(strings.TrimSpace(l))
		if !labelRe.MatchString(l) {
			return nil, respond.BadRequest("invalid_label", "labels are 1 to 32 characters of a-z, 0-9, _ and -").
				Field(field+"["+strconv.Itoa(i)+"]").Reason("invalid_format").Param("max_length", maxLabelLen)
		}
		if !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
	sort.Strings(labels)
	return labels, nil
}

// applyLabels applies a label change to one agent.
func (s *Server) applyLabels(ctx context.Context, agentID string, labels []string, change labelChange) error {
	now := s.now().Unix()
	return s.db.Write(ctx, func(q storage.Q) error { return change(ctx, q, agentID, labels, now) })
}

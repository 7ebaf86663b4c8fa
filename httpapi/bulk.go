package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/bastion-backup/bastion/engine/bulk"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/audit"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// BulkQueue is the bulk operations loop (engine/bulk.Loop) as the API uses it: the API registers
// each kind's work, done by the same functions as the matching single-agent routes, and wakes the
// loop when it queues items.
type BulkQueue interface {
	Handle(kind string, k bulk.Kind)
	Wake()
}

// Bulk operation kinds (the original's names).
const (
	bulkLabelsAdd      = "agent_labels_add"
	bulkLabelsRemove   = "agent_labels_remove"
	bulkSyncConfig     = "sync_config_now"
	bulkJobDeploy      = "job_deploy"
	bulkWebdavDistrib  = "webdav_secret_distribute"
	defaultCloneName   = "{name} ({node})"
	bulkListLimit      = 50
	maxBulkSelectorIDs = 1000
)

// bulkKind is one kind: the least role that may start (or retry) it, which is the role of the
// matching single-agent route; the check of its payload, which returns what is stored; and the
// work for one agent.
type bulkKind struct {
	role  string
	parse func(ctx context.Context, raw json.RawMessage) (any, error)
	do    func(ctx context.Context, it bulk.Item, payload json.RawMessage) (bulk.Note, error)
}

func (s *Server) bulkKinds() map[string]bulkKind {
	return map[string]bulkKind{
		bulkLabelsAdd:     {RoleAdmin, parseLabelsPayload, s.bulkLabels(addLabels)},
		bulkLabelsRemove:  {RoleAdmin, parseLabelsPayload, s.bulkLabels(removeLabels)},
		bulkSyncConfig:    {RoleOperator, func(context.Context, json.RawMessage) (any, error) { return struct{}{}, nil }, s.bulkSync},
		bulkJobDeploy:     {RoleAdmin, s.parseDeployPayload, s.bulkDeploy},
		bulkWebdavDistrib: {RoleAdmin, s.parseDistributePayload, s.bulkDistribute},
	}
}

// registerBulkKinds gives the loop each kind's work. The work logs through the API's logger.
func (s *Server) registerBulkKinds(q BulkQueue) {
	for name, k := range s.bulkKinds() {
		do := k.do
		q.Handle(name, bulk.KindFunc(func(ctx context.Context, it bulk.Item, payload json.RawMessage) (bulk.Note, error) {
			log := s.log.With().Str("op_id", it.OpID).Str("agent_id", it.AgentID).Str("bulk_kind", name).Logger()
			return do(log.WithContext(ctx), it, payload)
		}))
	}
}

func (s *Server) bulkRoutes(r chi.Router) {
	if s.cfg.Bulk == nil {
		return
	}
	r.Post("/bulk-operations/preview", s.previewBulk)
	r.Get("/bulk-operations", s.listBulk)
	r.Post("/bulk-operations", s.createBulk)
	r.Get("/bulk-operations/{id}", s.getBulk)
	r.Post("/bulk-operations/{id}/cancel", s.cancelBulk)
	r.Post("/bulk-operations/{id}/retry-failed", s.retryBulk)
}

type bulkSelector struct {
	NodeIDs    []string `json:"node_ids"`
	Labels     []string `json:"labels"`
	LabelsMode *string  `json:"labels_mode"`
}

type bulkRequest struct {
	Kind     string          `json:"kind"`
	Selector *bulkSelector   `json:"selector"`
	Payload  json.RawMessage `json:"payload"`
}

// bulkPlan is a checked request: the kind, the agents it targets and what is stored.
type bulkPlan struct {
	kind         string
	agentIDs     []string
	selectorJSON string
	payload      any
}

// planBulk checks a create or preview request, in the order kind, role, selector, payload, and
// answers the first failure as a 4xx.
func (s *Server) planBulk(r *http.Request) (bulkPlan, error) {
	var req bulkRequest
	if err := respond.DecodeJSON(r, &req); err != nil {
		return bulkPlan{}, err
	}
	p := bulkPlan{kind: strings.TrimSpace(req.Kind)}
	k, ok := s.bulkKinds()[p.kind]
	if !ok {
		return p, respond.BadRequest("invalid_kind", "kind must be one of "+strings.Join(bulkKindNames(), ", ")).
			Field("kind").Reason("invalid_value")
	}
	if !hasRole(r, k.role) {
		return p, errRoleForbidden(k.role)
	}
	var err error
	if p.agentIDs, p.selectorJSON, err = s.resolveSelector(r.Context(), req.Selector); err != nil {
		return p, err
	}
	if p.payload, err = k.parse(r.Context(), req.Payload); err != nil {
		return p, err
	}
	return p, nil
}

func bulkKindNames() []string {
	return []string{bulkLabelsAdd, bulkLabelsRemove, bulkSyncConfig, bulkJobDeploy, bulkWebdavDistrib}
}

func invalidSelector(msg string) *respond.APIError {
	return respond.BadRequest("invalid_selector", msg).Field("selector")
}

// resolveSelector turns a selector into agent ids (sorted) and the selector as stored: node_ids
// (each must exist) win over labels (labels_mode and: every label, or: any; default and).
func (s *Server) resolveSelector(ctx context.Context, sel *bulkSelector) ([]string, string, error) {
	if sel == nil {
		return nil, "", invalidSelector("selector is required: node_ids or labels")
	}
	// A set, checked against the limit as it grows: a body full of ids must not cost a scan of
	// the list per id.
	seen := map[string]bool{}
	var ids []string
	for _, id := range sel.NodeIDs {
		if id = strings.TrimSpace(id); id != "" && !seen[id] {
			if len(ids) == maxBulkSelectorIDs {
				return nil, "", invalidSelector("too many node_ids").Reason("too_many").Param("max", maxBulkSelectorIDs)
			}
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		slices.Sort(ids)
		agents, err := s.db.Reader().ListAgents(ctx)
		if err != nil {
			return nil, "", err
		}
		known := map[string]bool{}
		for _, a := range agents {
			known[a.ID] = true
		}
		var missing []string
		for _, id := range ids {
			if !known[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return nil, "", invalidSelector("one or more agents were not found").Reason("not_found").Param("missing", missing)
		}
		raw, _ := json.Marshal(map[string]any{"node_ids": ids})
		return ids, string(raw), nil
	}
	if len(sel.Labels) == 0 {
		return nil, "", invalidSelector("selector is required: node_ids or labels").Reason("required")
	}
	labels, err := normalizeLabels(sel.Labels, "selector.labels")
	if err != nil {
		return nil, "", err
	}
	mode := "and"
	if sel.LabelsMode != nil && *sel.LabelsMode != "" {
		mode = *sel.LabelsMode
	}
	if mode != "and" && mode != "or" {
		return nil, "", respond.BadRequest("invalid_labels_mode", "labels_mode must be and or or").
			Field("selector.labels_mode").Reason("invalid_value")
	}
	ids, err = s.db.Reader().AgentIDsByLabels(ctx, labels, mode == "or")
	if err != nil {
		return nil, "", err
	}
	if len(ids) == 0 {
		return nil, "", invalidSelector("the selector matches no agents").Reason("no_match")
	}
	raw, _ := json.Marshal(map[string]any{"labels": labels, "labels_mode": mode})
	return ids, string(raw), nil
}

func invalidPayload(msg string) *respond.APIError {
	return respond.BadRequest("invalid_payload", msg).Field("payload")
}

// decodePayload reads a kind's payload strictly (unknown fields refused).
func decodePayload(raw json.RawMessage, v any) error {
	if t := bytes.TrimSpace(raw); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return invalidPayload("payload is required").Reason("required")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidPayload("payload is not valid: " + err.Error()).Reason("invalid_format")
	}
	return nil
}

type labelsPayload struct {
	Labels []string `json:"labels"`
}

func parseLabelsPayload(_ context.Context, raw json.RawMessage) (any, error) {
	var p labelsPayload
	if err := decodePayload(raw, &p); err != nil {
		return nil, err
	}
	labels, err := normalizeLabels(p.Labels, "payload.labels")
	if err != nil {
		return nil, err
	}
	if len(labels) == 0 {
		return nil, invalidPayload("labels is required").Field("payload.labels").Reason("required")
	}
	return labelsPayload{Labels: labels}, nil
}

type deployPayload struct {
	SourceJobID  string  `json:"source_job_id"`
	NameTemplate *string `json:"name_template,omitempty"`
}

func (s *Server) parseDeployPayload(ctx context.Context, raw json.RawMessage) (any, error) {
	var p deployPayload
	if err := decodePayload(raw, &p); err != nil {
		return nil, err
	}
	p.SourceJobID = strings.TrimSpace(p.SourceJobID)
	if p.SourceJobID == "" {
		return nil, invalidPayload("source_job_id is required").Field("payload.source_job_id").Reason("required")
	}
	if _, err := s.db.Reader().GetJob(ctx, p.SourceJobID); errors.Is(err, storage.ErrNotFound) {
		return nil, invalidPayload("source job not found").Field("payload.source_job_id").Reason("not_found")
	} else if err != nil {
		return nil, err
	}
	tmpl := defaultCloneName
	if p.NameTemplate != nil && strings.TrimSpace(*p.NameTemplate) != "" {
		tmpl = strings.TrimSpace(*p.NameTemplate)
	}
	p.NameTemplate = &tmpl
	return p, nil
}

type distributePayload struct {
	Name      string `json:"name"`
	Overwrite *bool  `json:"overwrite,omitempty"`
}

func (s *Server) parseDistributePayload(ctx context.Context, raw json.RawMessage) (any, error) {
	var p distributePayload
	if err := decodePayload(raw, &p); err != nil {
		return nil, err
	}
	p.Name = strings.TrimSpace(p.Name)
	if err := secrets.ValidateName(p.Name); err != nil {
		return nil, invalidPayload("name: " + err.Error()).Field("payload.name").Reason("invalid_value")
	}
	if s.cfg.Secrets == nil {
		return nil, respond.New(http.StatusServiceUnavailable, "secrets_unavailable", "the secret store is not configured")
	}
	if _, err := s.db.Reader().GetSecret(ctx, secrets.HubNode, secrets.KindWebDAV, p.Name); errors.Is(err, storage.ErrNotFound) {
		return nil, invalidPayload("WebDAV credential not found on the Hub").Field("payload.name").Reason("not_found")
	} else if err != nil {
		return nil, err
	}
	p.Overwrite = ptrTo(p.Overwrite != nil && *p.Overwrite)
	return p, nil
}

func (s *Server) createBulk(w http.ResponseWriter, r *http.Request) {
	p, err := s.planBulk(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	payload, _ := json.Marshal(p.payload)
	op := storage.BulkOperation{ID: uuid.NewString(), Kind: p.kind, SelectorJSON: p.selectorJSON,
		PayloadJSON: string(payload), CreatedAt: s.now().Unix()}
	if uid := UserID(r); uid != 0 {
		op.CreatedByUserID = &uid
	}
	if err := s.db.Write(r.Context(), func(q storage.Q) error { return q.InsertBulkOperation(r.Context(), op, p.agentIDs) }); err != nil {
		respond.Error(w, r, err)
		return
	}
	audit.From(r).Object("bulk_operations", op.ID)
	s.cfg.Bulk.Wake()
	respond.JSON(w, http.StatusOK, map[string]string{"op_id": op.ID})
}

type bulkCountsJSON struct {
	Total    int64 `json:"total"`
	Queued   int64 `json:"queued"`
	Running  int64 `json:"running"`
	Success  int64 `json:"success"`
	Failed   int64 `json:"failed"`
	Canceled int64 `json:"canceled"`
}

type bulkOpJSON struct {
	ID         string `json:"id"`
	Kind       string `json:"kind"`
	Status     string `json:"status"`
	CreatedAt  int64  `json:"created_at"`
	UpdatedAt  int64  `json:"updated_at"`
	StartedAt  *int64 `json:"started_at"`
	EndedAt    *int64 `json:"ended_at"`
	CanceledAt *int64 `json:"canceled_at"`
	bulkCountsJSON
}

type bulkItemJSON struct {
	OpID          string  `json:"op_id"`
	AgentID       string  `json:"agent_id"`
	AgentName     *string `json:"agent_name"`
	Status        string  `json:"status"`
	Attempts      int64   `json:"attempts"`
	CreatedAt     int64   `json:"created_at"`
	UpdatedAt     int64   `json:"updated_at"`
	StartedAt     *int64  `json:"started_at"`
	EndedAt       *int64  `json:"ended_at"`
	LastErrorKind *string `json:"last_error_kind"`
	LastError     *string `json:"last_error"`
}

type bulkDetailJSON struct {
	bulkOpJSON
	CreatedByUserID *int64          `json:"created_by_user_id"`
	Selector        json.RawMessage `json:"selector"`
	Payload         json.RawMessage `json:"payload"`
	Items           []bulkItemJSON  `json:"items"`
}

func bulkOpOut(o storage.BulkOperation) bulkOpJSON {
	c := o.Counts
	return bulkOpJSON{ID: o.ID, Kind: o.Kind, Status: o.Status, CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
		StartedAt: o.StartedAt, EndedAt: o.EndedAt, CanceledAt: o.CanceledAt,
		bulkCountsJSON: bulkCountsJSON{c.Total, c.Queued, c.Running, c.Success, c.Failed, c.Canceled}}
}

func (s *Server) listBulk(w http.ResponseWriter, r *http.Request) {
	ops, err := s.db.Reader().ListBulkOperations(r.Context(), bulkListLimit)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out := make([]bulkOpJSON, 0, len(ops))
	for _, o := range ops {
		out = append(out, bulkOpOut(o))
	}
	respond.JSON(w, http.StatusOK, out)
}

func bulkNotFound(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return respond.NotFound("bulk_operation_not_found", "bulk operation not found")
	}
	return err
}

func (s *Server) getBulk(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	var o storage.BulkOperation
	var items []storage.BulkItem
	err := s.db.Read(r.Context(), func(q storage.Q) error {
		var err error
		if o, err = q.GetBulkOperation(r.Context(), id); err != nil {
			return err
		}
		items, err = q.ListBulkItems(r.Context(), id)
		return err
	})
	if err != nil {
		respond.Error(w, r, bulkNotFound(err))
		return
	}
	out := bulkDetailJSON{bulkOpJSON: bulkOpOut(o), CreatedByUserID: o.CreatedByUserID,
		Selector: json.RawMessage(o.SelectorJSON), Payload: json.RawMessage(o.PayloadJSON), Items: make([]bulkItemJSON, 0, len(items))}
	for _, it := range items {
		out.Items = append(out.Items, bulkItemJSON{OpID: it.OpID, AgentID: it.AgentID, AgentName: it.AgentName, Status: it.Status,
			Attempts: it.Attempts, CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt, StartedAt: it.StartedAt, EndedAt: it.EndedAt,
			LastErrorKind: it.LastErrorKind, LastError: it.LastError})
	}
	respond.JSON(w, http.StatusOK, out)
}

func (s *Server) cancelBulk(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	err := s.db.Write(r.Context(), func(q storage.Q) error { return q.CancelBulkOperation(r.Context(), id, s.now().Unix()) })
	if err != nil {
		respond.Error(w, r, bulkNotFound(err))
		return
	}
	audit.From(r).Object("bulk_operations", id)
	respond.NoContent(w)
}

func (s *Server) retryBulk(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	o, err := s.db.Reader().GetBulkOperation(r.Context(), id)
	if err != nil {
		respond.Error(w, r, bulkNotFound(err))
		return
	}
	// Retrying does the kind's work again: it needs what starting it needs.
	if k, ok := s.bulkKinds()[o.Kind]; ok && !hasRole(r, k.role) {
		respond.Error(w, r, errRoleForbidden(k.role))
		return
	}
	var n int64
	err = s.db.Write(r.Context(), func(q storage.Q) error {
		var err error
		n, err = q.RetryFailedBulkItems(r.Context(), id, s.now().Unix())
		return err
	})
	switch {
	case errors.Is(err, storage.ErrBulkCanceled):
		respond.Error(w, r, respond.BadRequest("cannot_retry", "a canceled bulk operation cannot be retried"))
		return
	case err != nil:
		respond.Error(w, r, bulkNotFound(err))
		return
	}
	audit.From(r).Object("bulk_operations", id)
	if n > 0 {
		s.cfg.Bulk.Wake()
	}
	respond.NoContent(w)
}

// The work of each kind, for one agent. Each is safe to repeat: a restart runs again the items
// that were running.

// bulkAgent loads the item's agent; a revoked one fails the item when revoked is false.
func (s *Server) bulkAgent(ctx context.Context, id string, allowRevoked bool) (storage.Agent, error) {
	a, err := s.db.Reader().GetAgent(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return a, bulk.Fail("agent_not_found", "the agent no longer exists")
	}
	if err != nil {
		return a, err
	}
	if a.RevokedAt != nil && !allowRevoked {
		return a, bulk.Fail("agent_revoked", "the agent is revoked")
	}
	return a, nil
}

func (s *Server) bulkLabels(change labelChange) func(context.Context, bulk.Item, json.RawMessage) (bulk.Note, error) {
	return func(ctx context.Context, it bulk.Item, raw json.RawMessage) (bulk.Note, error) {
		var p labelsPayload
		if err := json.Unmarshal(raw, &p); err != nil || len(p.Labels) == 0 {
			return bulk.Note{}, bulk.Fail("invalid_payload", "the stored payload has no labels")
		}
		// As the single-agent routes, labels of a revoked agent may still be edited.
		if _, err := s.bulkAgent(ctx, it.AgentID, true); err != nil {
			return bulk.Note{}, err
		}
		return bulk.Note{}, s.applyLabels(ctx, it.AgentID, p.Labels, change)
	}
}

func (s *Server) bulkSync(ctx context.Context, it bulk.Item, _ json.RawMessage) (bulk.Note, error) {
	if _, err := s.bulkAgent(ctx, it.AgentID, false); err != nil {
		return bulk.Note{}, err
	}
	// An offline agent gets the config when it connects: that is success, as in the original.
	if _, err := s.syncConfig(ctx, it.AgentID); err != nil {
		return bulk.Note{}, bulk.Fail("send_failed", err.Error())
	}
	return bulk.Note{}, nil
}

// cloneID is the id of the job a job_deploy item creates: derived from the operation and the
// agent, so that an item run again after a restart finds its job instead of making a second.
func cloneID(opID, agentID string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("bastion:bulk-operation:"+opID+":job_deploy:"+agentID)).String()
}

// cloneBody is the job a job_deploy makes for agent: the source's schedule, policies, spec and
// drill schedule, bound to the agent, named by the template ({name}: the source's name,
// {node}: the agent id) with " #2", " #3", … added when one of the agent's jobs has that name.
func (s *Server) cloneBody(ctx context.Context, src storage.Job, tmpl, agentID string) (jobBody, error) {
	base := strings.TrimSpace(strings.NewReplacer("{name}", src.Name, "{node}", agentID).Replace(tmpl))
	jobs, _, err := s.db.Reader().ListJobs(ctx, storage.JobFilter{AgentID: agentID, IncludeArchived: true})
	if err != nil {
		return jobBody{}, err
	}
	used := map[string]bool{}
	for _, j := range jobs {
		used[j.Name] = true
	}
	name := base
	for i := 2; used[name] && base != ""; i++ {
		name = fmt.Sprintf("%s #%d", base, i)
	}
	b := jobBody{Name: name, AgentID: &agentID, Schedule: src.Schedule, ScheduleTimezone: &src.ScheduleTimezone,
		OverlapPolicy: &src.OverlapPolicy, MissedRunPolicy: &src.MissedRunPolicy, Spec: json.RawMessage(src.SpecJSON)}
	if v, err := s.db.Reader().GetJobVerification(ctx, src.ID); err == nil && v.ConfigJSON != nil {
		b.Verification = json.RawMessage(*v.ConfigJSON)
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return jobBody{}, err
	}
	return b, nil
}

// cloneError is what a clone's validation failure says about it.
func cloneError(err error) (string, bool) {
	var ae *respond.APIError
	if errors.As(err, &ae) && ae.Status < 500 {
		return ae.Message, true
	}
	return "", false
}

func (s *Server) bulkDeploy(ctx context.Context, it bulk.Item, raw json.RawMessage) (bulk.Note, error) {
	var p deployPayload
	if err := json.Unmarshal(raw, &p); err != nil || p.SourceJobID == "" || p.NameTemplate == nil {
		return bulk.Note{}, bulk.Fail("invalid_payload", "the stored payload has no source job or name template")
	}
	id := cloneID(it.OpID, it.AgentID)
	if _, err := s.db.Reader().GetJob(ctx, id); err == nil {
		return bulk.Note{}, nil // made by an earlier attempt that a restart interrupted
	} else if !errors.Is(err, storage.ErrNotFound) {
		return bulk.Note{}, err
	}
	src, err := s.db.Reader().GetJob(ctx, p.SourceJobID)
	if errors.Is(err, storage.ErrNotFound) {
		return bulk.Note{}, bulk.Fail("source_not_found", "the source job no longer exists")
	} else if err != nil {
		return bulk.Note{}, err
	}
	if _, err := s.bulkAgent(ctx, it.AgentID, false); err != nil {
		return bulk.Note{}, err
	}
	body, err := s.cloneBody(ctx, src, *p.NameTemplate, it.AgentID)
	if err != nil {
		return bulk.Note{}, err
	}
	v, err := s.validateJob(ctx, body)
	if err != nil {
		if msg, ok := cloneError(err); ok {
			return bulk.Note{}, bulk.Fail("validation_failed", msg)
		}
		return bulk.Note{}, err
	}
	_, err = s.insertJob(ctx, id, v)
	return bulk.Note{}, err
}

func (s *Server) bulkDistribute(ctx context.Context, it bulk.Item, raw json.RawMessage) (bulk.Note, error) {
	var p distributePayload
	if err := json.Unmarshal(raw, &p); err != nil || p.Name == "" {
		return bulk.Note{}, bulk.Fail("invalid_payload", "the stored payload has no credential name")
	}
	if s.cfg.Secrets == nil {
		return bulk.Note{}, errors.New("the secret store is not configured")
	}
	if _, err := s.bulkAgent(ctx, it.AgentID, false); err != nil {
		return bulk.Note{}, err
	}
	has, err := dbSecrets{s.db}.SecretExists(ctx, it.AgentID, secrets.KindWebDAV, p.Name)
	if err != nil {
		return bulk.Note{}, err
	}
	if has && (p.Overwrite == nil || !*p.Overwrite) {
		return bulk.Note{Kind: "skipped", Message: "already exists"}, nil
	}
	payload, err := s.cfg.Secrets.Get(ctx, secrets.HubNode, secrets.KindWebDAV, p.Name)
	if errors.Is(err, secrets.ErrNotFound) {
		return bulk.Note{}, bulk.Fail("source_missing", "the Hub's WebDAV credential no longer exists")
	} else if err != nil {
		return bulk.Note{}, err
	}
	// The copy keeps the servers the Hub's credential is bound to: distributing it must not
	// unbind it.
	origins, err := s.cfg.Secrets.AllowedOrigins(ctx, secrets.HubNode, secrets.KindWebDAV, p.Name)
	if err != nil {
		return bulk.Note{}, err
	}
	if err := s.saveSecret(ctx, it.AgentID, secrets.KindWebDAV, p.Name, payload, secrets.OriginUpdate{Replace: true, Origins: origins}); err != nil {
		return bulk.Note{}, err
	}
	s.pushNodeSecrets(ctx, it.AgentID)
	return bulk.Note{}, nil
}

// Preview: what job_deploy and webdav_secret_distribute would do for each agent; nothing is
// changed.

type deployPreviewItem struct {
	AgentID     string  `json:"agent_id"`
	AgentName   *string `json:"agent_name"`
	PlannedName string  `json:"planned_name"`
	Valid       bool    `json:"valid"`
	Error       *string `json:"error"`
}

type distributePreviewItem struct {
	AgentID   string  `json:"agent_id"`
	AgentName *string `json:"agent_name"`
	Action    string  `json:"action"` // skip | update
	Note      *string `json:"note"`
}

func (s *Server) previewBulk(w http.ResponseWriter, r *http.Request) {
	p, err := s.planBulk(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	ctx := r.Context()
	agents, err := s.db.Reader().ListAgents(ctx)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	names := map[string]*string{}
	for _, a := range agents {
		names[a.ID] = a.Name
	}
	switch pl := p.payload.(type) {
	case deployPayload:
		src, err := s.db.Reader().GetJob(ctx, pl.SourceJobID)
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		items := make([]deployPreviewItem, 0, len(p.agentIDs))
		for _, id := range p.agentIDs {
			it := deployPreviewItem{AgentID: id, AgentName: names[id], Valid: true}
			body, err := s.cloneBody(ctx, src, *pl.NameTemplate, id)
			if err != nil {
				respond.Error(w, r, err)
				return
			}
			it.PlannedName = body.Name
			if _, err := s.validateJob(ctx, body); err != nil {
				msg, ok := cloneError(err)
				if !ok {
					respond.Error(w, r, err)
					return
				}
				it.Valid, it.Error = false, &msg
			}
			items = append(items, it)
		}
		respond.JSON(w, http.StatusOK, map[string]any{"kind": bulkJobDeploy, "source_job_id": pl.SourceJobID,
			"name_template": *pl.NameTemplate, "items": items})
	case distributePayload:
		items := make([]distributePreviewItem, 0, len(p.agentIDs))
		for _, id := range p.agentIDs {
			has, err := dbSecrets{s.db}.SecretExists(ctx, id, secrets.KindWebDAV, pl.Name)
			if err != nil {
				respond.Error(w, r, err)
				return
			}
			it := distributePreviewItem{AgentID: id, AgentName: names[id], Action: "update"}
			if has && !*pl.Overwrite {
				it.Action, it.Note = "skip", ptrTo("already exists")
			}
			items = append(items, it)
		}
		respond.JSON(w, http.StatusOK, map[string]any{"kind": bulkWebdavDistrib, "secret_name": pl.Name,
			"overwrite": *pl.Overwrite, "items": items})
	default:
		respond.Error(w, r, respond.BadRequest("preview_not_supported", "preview is available for job_deploy and webdav_secret_distribute only").Field("kind"))
	}
}

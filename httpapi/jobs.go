package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/bastion-backup/bastion/engine/targets"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/pathguard"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/schedule"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/audit"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// JobScheduler is the scheduler as the jobs API uses it.
type JobScheduler interface {
	// JobChanged wakes the scheduler after a job was created, changed, archived, unarchived or
	// deleted.
	JobChanged(jobID string)
	// Wake makes the scheduler look at its jobs now (a job was run by hand); it re-reads nothing.
	Wake()
	// NextRunAt is when the job fires next (nil: manual, archived).
	NextRunAt(job storage.Job, now time.Time) *time.Time
}

// SecretLookup answers whether a secret exists in a node's scope ("hub" or an agent id), for job
// validation. The default looks the row up in the database without decrypting it.
type SecretLookup interface {
	SecretExists(ctx context.Context, node, kind, name string) (bool, error)
}

type dbSecrets struct{ db *storage.DB }

func (d dbSecrets) SecretExists(ctx context.Context, node, kind, name string) (bool, error) {
	_, err := d.db.Reader().GetSecret(ctx, node, kind, name)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// maxJobRuns is how many runs GET /api/jobs/{id}/runs returns.
const maxJobRuns = 50

// Schedule preview bounds.
const (
	defaultPreviewCount = 5
	maxPreviewCount     = 50
)

// jobRoutes: jobs CRUD, archive, run now, a job's runs, and the schedule preview.
func (s *Server) jobRoutes(r chi.Router) {
	if s.cfg.Runs == nil {
		return
	}
	r.Get("/jobs", s.listJobs)
	r.Post("/jobs", s.createJob)
	r.Get("/jobs/workspace", s.jobsWorkspace)
	r.Get("/jobs/{id}", s.getJob)
	r.Put("/jobs/{id}", s.updateJob)
	r.Delete("/jobs/{id}", s.deleteJob)
	r.Post("/jobs/{id}/archive", s.setJobArchived(true))
	r.Post("/jobs/{id}/unarchive", s.setJobArchived(false))
	r.Post("/jobs/{id}/run", s.runJobNow)
	r.Get("/jobs/{id}/runs", s.listJobRuns)
	r.Get("/jobs/{id}/workspace", s.jobWorkspace)
	r.Get("/schedule/preview", s.previewSchedule)
}

// jobJSON is a job as the API shows it. The list omits spec.
type jobJSON struct {
	ID                 string  `json:"id"`
	Name               string  `json:"name"`
	AgentID            *string `json:"agent_id"`
	Schedule           *string `json:"schedule"`
	ScheduleTimezone   string  `json:"schedule_timezone"`
	OverlapPolicy      string  `json:"overlap_policy"`
	MissedRunPolicy    string  `json:"missed_run_policy"`
	CreatedAt          int64   `json:"created_at"`
	UpdatedAt          int64   `json:"updated_at"`
	ArchivedAt         *int64  `json:"archived_at"`
	NextRunAt          *int64  `json:"next_run_at"`
	LastScheduledAt    *int64  `json:"last_scheduled_at"`
	LatestRunID        *string `json:"latest_run_id"`
	LatestRunStatus    *string `json:"latest_run_status"`
	LatestRunStartedAt *int64  `json:"latest_run_started_at"`
	LatestRunEndedAt   *int64  `json:"latest_run_ended_at"`
	jobVerificationJSON
	Spec json.RawMessage `json:"spec,omitempty"`
}

// jobOutV is jobOut with the job's drill row (nil: none) and the stale threshold.
func (s *Server) jobOutV(it storage.JobListItem, withSpec bool, v *storage.JobVerification, staleDays int) jobJSON {
	out := s.jobOut(it, withSpec)
	out.jobVerificationJSON = verificationOut(v, staleDays, s.now().Unix())
	return out
}

// jobOutRead is jobOutV reading the job's drill row.
func (s *Server) jobOutRead(ctx context.Context, it storage.JobListItem, withSpec bool) (jobJSON, error) {
	rows, days, err := s.jobsVerification(ctx, []string{it.Job.ID})
	if err != nil {
		return jobJSON{}, err
	}
	var v *storage.JobVerification
	if row, ok := rows[it.Job.ID]; ok {
		v = &row
	}
	return s.jobOutV(it, withSpec, v, days), nil
}

func (s *Server) jobOut(it storage.JobListItem, withSpec bool) jobJSON {
	j := it.Job
	out := jobJSON{
		ID: j.ID, Name: j.Name, AgentID: j.AgentID, Schedule: j.Schedule, ScheduleTimezone: j.ScheduleTimezone,
		OverlapPolicy: j.OverlapPolicy, MissedRunPolicy: j.MissedRunPolicy, CreatedAt: j.CreatedAt,
		UpdatedAt: j.UpdatedAt, ArchivedAt: j.ArchivedAt, LastScheduledAt: j.LastScheduledAt,
		LatestRunID: it.LatestRunID, LatestRunStatus: it.LatestRunStatus,
		LatestRunStartedAt: it.LatestRunStartedAt, LatestRunEndedAt: it.LatestRunEndedAt,
	}
	if s.cfg.Scheduler != nil {
		if t := s.cfg.Scheduler.NextRunAt(j, s.now()); t != nil {
			out.NextRunAt = ptrTo(t.Unix())
		}
	}
	if withSpec {
		out.Spec = json.RawMessage(j.SpecJSON)
	}
	return out
}

func ptrTo[T any](v T) *T { return &v }

// jobError answers a missing job (storage.ErrNotFound) as 404 job_not_found; other errors pass
// through.
func jobError(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return respond.NotFound("job_not_found", "job not found")
	}
	return err
}

var runStatuses = map[string]bool{
	storage.RunQueued: true, storage.RunRunning: true, storage.RunSuccess: true, storage.RunFailed: true,
	storage.RunRejected: true, storage.RunCanceled: true,
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	out, pg, total, err := s.readJobList(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, map[string]any{"items": out, "page": pg.page, "page_size": pg.size, "total": total})
}

// readJobList is GET /api/jobs's filters, paging and items, shared with the jobs workspace. The
// page size it returns is the number of items when neither page nor page_size was given.
func (s *Server) readJobList(r *http.Request) ([]jobJSON, pageRequest, int, error) {
	q := r.URL.Query()
	var f storage.JobFilter
	switch scope := q.Get("scope"); {
	case scope == "" || scope == "all":
	case scope == "hub":
		f.HubOnly = true
	case strings.HasPrefix(scope, "agent:") && len(scope) > len("agent:"):
		f.AgentID = strings.TrimPrefix(scope, "agent:")
	default:
		return nil, pageRequest{}, 0, respond.BadRequest("invalid_scope", "scope must be all, hub or agent:<id>").Field("scope")
	}
	if v := q.Get("include_archived"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, pageRequest{}, 0, respond.BadRequest("invalid_include_archived", "include_archived must be true or false").Field("include_archived")
		}
		f.IncludeArchived = b
	}
	f.Query = strings.TrimSpace(q.Get("q"))
	switch st := q.Get("latest_status"); {
	case st == "" || st == "all" || st == "never" || runStatuses[st]:
		f.LatestStatus = st
	default:
		return nil, pageRequest{}, 0, respond.BadRequest("invalid_latest_status", "latest_status must be all, never or a run status").Field("latest_status")
	}
	switch m := q.Get("schedule_mode"); m {
	case "", "all", "manual", "scheduled":
		f.ScheduleMode = m
	default:
		return nil, pageRequest{}, 0, respond.BadRequest("invalid_schedule_mode", "schedule_mode must be all, manual or scheduled").Field("schedule_mode")
	}
	switch so := q.Get("sort"); so {
	case "", "updated_desc", "updated_asc", "name_asc", "name_desc":
		f.Sort = so
	default:
		return nil, pageRequest{}, 0, respond.BadRequest("invalid_sort", "sort must be updated_desc, updated_asc, name_asc or name_desc").Field("sort")
	}
	pg, err := readPage(r)
	if err != nil {
		return nil, pageRequest{}, 0, err
	}
	if pg.paged {
		f.Limit, f.Offset = pg.size, pg.offset()
	}
	var items []storage.JobListItem
	var total int
	err = s.db.Read(r.Context(), func(q storage.Q) error {
		var err error
		items, total, err = q.ListJobs(r.Context(), f)
		return err
	})
	if err != nil {
		return nil, pageRequest{}, 0, err
	}
	ids := make([]string, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.Job.ID)
	}
	vrows, staleDays, err := s.jobsVerification(r.Context(), ids)
	if err != nil {
		return nil, pageRequest{}, 0, err
	}
	out := make([]jobJSON, 0, len(items))
	for _, it := range items {
		var v *storage.JobVerification
		if row, ok := vrows[it.Job.ID]; ok {
			v = &row
		}
		out = append(out, s.jobOutV(it, false, v, staleDays))
	}
	if !pg.paged { // neither page nor page_size: everything, as one page
		pg.size = len(out)
	}
	return out, pg, total, nil
}

// jobBody is the body of create and full update.
type jobBody struct {
	Name             string          `json:"name"`
	AgentID          *string         `json:"agent_id"`
	Schedule         *string         `json:"schedule"`
	ScheduleTimezone *string         `json:"schedule_timezone"`
	OverlapPolicy    *string         `json:"overlap_policy"`
	MissedRunPolicy  *string         `json:"missed_run_policy"`
	Spec             json.RawMessage `json:"spec"`
	// Verification is the job's drill schedule; absent or null: none.
	Verification json.RawMessage `json:"verification"`
}

// validJob is a job body that passed every check.
type validJob struct {
	name, timezone, overlap, missed string
	agentID, schedule               *string
	spec                            *jobspec.Spec
	specJSON                        []byte
	verification                    *string // JSON of the validated drill schedule; nil: none
	// bindOrigin is set when the job's WebDAV credential is bound to no server yet: saving the
	// job binds it to the job's server (an admin's CSRF-checked write, never a GET).
	bindOrigin bool
}

// validateJob checks a body in the order of hub.md §6 and answers the first failure as a 400.
func (s *Server) validateJob(ctx context.Context, b jobBody) (validJob, error) {
	var v validJob
	var err error
	if v.name, err = respond.DisplayName("name", b.Name); err != nil {
		return v, err
	}
	if b.Schedule != nil && strings.TrimSpace(*b.Schedule) != "" {
		v.schedule = ptrTo(strings.TrimSpace(*b.Schedule))
	}
	v.timezone = s.cfg.HubTimezone
	if b.ScheduleTimezone != nil && strings.TrimSpace(*b.ScheduleTimezone) != "" {
		v.timezone = strings.TrimSpace(*b.ScheduleTimezone)
	}
	loc, err := schedule.LoadLocation(v.timezone)
	if err != nil {
		return v, respond.BadRequest("invalid_timezone", fmt.Sprintf("schedule_timezone %q is not an IANA time zone", v.timezone)).
			Reason("invalid_value").Field("schedule_timezone")
	}
	if b.AgentID != nil && strings.TrimSpace(*b.AgentID) != "" {
		v.agentID = ptrTo(strings.TrimSpace(*b.AgentID))
		revoked, err := s.db.Reader().AgentRevokedAt(ctx, *v.agentID)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return v, respond.BadRequest("invalid_agent_id", "no such agent").Reason("not_found").Field("agent_id")
		case err != nil:
			return v, err
		case revoked != nil:
			return v, respond.BadRequest("invalid_agent_id", "the agent is revoked").Reason("revoked").Field("agent_id")
		}
	}
	if len(bytes.TrimSpace(b.Spec)) == 0 || bytes.Equal(bytes.TrimSpace(b.Spec), []byte("null")) {
		return v, respond.BadRequest("invalid_spec", "spec is required").Reason("required").Field("spec")
	}
	spec, err := jobspec.ParseAndValidate(b.Spec)
	if err != nil {
		var je *jobspec.Error
		if errors.As(err, &je) {
			return v, respond.BadRequest("invalid_spec", je.Message).Reason(je.Reason).Field(je.Field)
		}
		return v, respond.BadRequest("invalid_spec", "spec is not valid").Reason("invalid_format").Field("spec")
	}
	if field, msg := notify.ValidateJobNotifications(spec.Notifications); field != "" {
		return v, respond.BadRequest("invalid_spec", msg).Reason("unsupported").Field(field)
	}
	v.spec, v.specJSON = spec, b.Spec
	if d, ok := spec.Target.Driver(); ok && d.SecretKind() != "" {
		kind, name := d.SecretKind(), spec.Target.SecretName()
		node := "hub"
		if v.agentID != nil {
			node = *v.agentID
		}
		ok, err := s.jobSecrets().SecretExists(ctx, node, kind, name)
		if err != nil {
			return v, err
		}
		if !ok {
			return v, respond.BadRequest("invalid_"+kind+"_secret", fmt.Sprintf("no %s secret %q on node %s", kind, name, node)).
				Reason("not_found").Field("spec.target.secret_name")
		}
		origins, err := s.db.Reader().SecretOrigins(ctx, node, kind, name)
		if err != nil {
			return v, err
		}
		if len(origins) == 0 {
			v.bindOrigin = true
		} else if err := secrets.CheckOrigin(kind, name, spec.Target.Config.Endpoint(), origins); err != nil {
			return v, originError(err, "spec.target."+endpointField(spec.Target))
		}
	}
	if lp, local := spec.Target.Config.(targets.LocalPath); local && v.agentID == nil && s.cfg.DataDir != "" {
		inside, err := pathguard.Within(lp.LocalPath(), s.cfg.DataDir)
		if err != nil {
			return v, respond.BadRequest("invalid_spec", "spec.target.base_dir could not be checked: "+err.Error()).
				Reason("invalid_value").Field("spec.target.base_dir")
		}
		if inside {
			return v, respond.BadRequest("target_inside_data_dir",
				"spec.target.base_dir is inside the Hub's data directory (symlinks resolved), which the Hub empties in part at start; choose a directory outside it").
				Reason("inside_data_dir").Field("spec.target.base_dir")
		}
	}
	if v.schedule != nil {
		if _, err := schedule.Parse(*v.schedule, loc); err != nil {
			reason := "invalid_format"
			if errors.Is(err, schedule.ErrNeverFires) {
				reason = "never_fires"
			}
			return v, respond.BadRequest("invalid_schedule", err.Error()).Reason(reason).Field("schedule")
		}
	}
	v.missed = runsMissedDefault
	if b.MissedRunPolicy != nil && *b.MissedRunPolicy != "" {
		v.missed = *b.MissedRunPolicy
	}
	if v.missed != "run_once" && v.missed != "skip" {
		return v, respond.BadRequest("invalid_missed_run_policy", "missed_run_policy must be run_once or skip").
			Reason("invalid_value").Field("missed_run_policy")
	}
	switch {
	case b.OverlapPolicy == nil || *b.OverlapPolicy == "":
		return v, respond.BadRequest("invalid_overlap_policy", "overlap_policy is required (reject or queue)").
			Reason("required").Field("overlap_policy")
	case *b.OverlapPolicy != runs.OverlapReject && *b.OverlapPolicy != runs.OverlapQueue:
		return v, respond.BadRequest("invalid_overlap_policy", "overlap_policy must be reject or queue").
			Reason("invalid_value").Field("overlap_policy")
	}
	v.overlap = *b.OverlapPolicy
	ver, err := jobspec.ParseVerification(b.Verification, v.timezone)
	if err != nil {
		var je *jobspec.Error
		if errors.As(err, &je) {
			return v, respond.BadRequest("invalid_verification", je.Message).Reason(je.Reason).Field(je.Field)
		}
		return v, respond.BadRequest("invalid_verification", "verification is not valid").Reason("invalid_format").Field("verification")
	}
	if ver != nil {
		raw, _ := json.Marshal(ver)
		v.verification = ptrTo(string(raw))
	}
	return v, nil
}

const runsMissedDefault = "run_once"

// node is the scope of a job's secrets: "hub", or the agent that runs it.
func (v validJob) node() string {
	if v.agentID != nil {
		return *v.agentID
	}
	return secrets.HubNode
}

// bindJobOrigin binds the job's unbound WebDAV credential to the job's server, in the job's
// write transaction. A credential bound meanwhile is left alone (the statement checks again).
func (s *Server) bindJobOrigin(ctx context.Context, q storage.Q, v validJob) error {
	if !v.bindOrigin {
		return nil
	}
	d, _ := v.spec.Target.Driver()
	kind, name := d.SecretKind(), v.spec.Target.SecretName()
	o, err := secrets.NormalizeOrigin(v.spec.Target.Config.Endpoint())
	if err != nil {
		return fmt.Errorf("bind %s credential %q: %w", kind, name, err)
	}
	bound, err := q.BindSecretOriginIfUnbound(ctx, v.node(), kind, name, o, s.now().Unix())
	if err != nil {
		return err
	}
	if bound {
		zerolog.Ctx(ctx).Info().Str("node_id", v.node()).Str("kind", kind).Str("secret_name", name).Str("origin", o).
			Msg("credential bound to the server of the job that uses it")
	}
	return nil
}

// afterBind sends an agent its secrets again when saving its job bound one of them: the agent
// checks the origins it was sent.
func (s *Server) afterBind(ctx context.Context, v validJob) {
	if v.bindOrigin && v.agentID != nil {
		s.pushNodeSecrets(ctx, *v.agentID)
	}
}

func (s *Server) jobSecrets() SecretLookup {
	if s.cfg.JobSecrets != nil {
		return s.cfg.JobSecrets
	}
	return dbSecrets{s.db}
}

// withDefaultRetention adds the Hub's default retention (settings hub_runtime_config_v1,
// default_backup_retention, when enabled) to a new job's spec that has none. The spec is
// otherwise stored as the client sent it.
func (s *Server) withDefaultRetention(ctx context.Context, v *validJob) error {
	if v.spec.HasRetention {
		return nil
	}
	raw, err := s.db.Reader().GetSetting(ctx, storage.SettingHubRuntimeConfig)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var cfg struct {
		Default json.RawMessage `json:"default_backup_retention"`
	}
	if json.Unmarshal([]byte(raw), &cfg) != nil || len(cfg.Default) == 0 || string(cfg.Default) == "null" {
		return nil
	}
	var enabled struct {
		Enabled bool `json:"enabled"`
	}
	if json.Unmarshal(cfg.Default, &enabled) != nil || !enabled.Enabled {
		return nil
	}
	out, spec, err := withRetention(string(v.specJSON), cfg.Default)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("the Hub's default retention is not valid; the new job keeps none")
		return nil
	}
	v.spec, v.specJSON = spec, out
	return nil
}

func (s *Server) decodeJob(w http.ResponseWriter, r *http.Request, create bool) (validJob, bool) {
	var b jobBody
	if err := respond.DecodeJSON(r, &b); err != nil {
		respond.Error(w, r, err)
		return validJob{}, false
	}
	v, err := s.validateJob(r.Context(), b)
	if err == nil && create {
		err = s.withDefaultRetention(r.Context(), &v)
	}
	if err != nil {
		respond.Error(w, r, err)
		return validJob{}, false
	}
	return v, true
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) {
	v, ok := s.decodeJob(w, r, true)
	if !ok {
		return
	}
	if err := authorizeHooks(r, nil, v.spec); err != nil {
		respond.Error(w, r, err)
		return
	}
	j, err := s.insertJob(r.Context(), runs.NewID(), v)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	audit.From(r).Object("jobs", j.ID)
	s.respondJob(w, r, storage.JobListItem{Job: j})
}

// insertJob stores a validated job under id and tells the scheduler, the drills and the job's
// agent: the creation of POST /api/jobs, and of each clone a job_deploy bulk operation makes.
func (s *Server) insertJob(ctx context.Context, id string, v validJob) (storage.Job, error) {
	now := s.now().Unix()
	j := storage.Job{
		ID: id, Name: v.name, AgentID: v.agentID, Schedule: v.schedule, ScheduleTimezone: v.timezone,
		OverlapPolicy: v.overlap, MissedRunPolicy: v.missed, SpecJSON: string(v.specJSON), CreatedAt: now, UpdatedAt: now,
	}
	err := s.db.Write(ctx, func(q storage.Q) error {
		if err := q.InsertJob(ctx, j); err != nil {
			return err
		}
		if v.verification != nil {
			if err := q.SetJobVerificationConfig(ctx, j.ID, v.verification, now); err != nil {
				return err
			}
		}
		return s.bindJobOrigin(ctx, q, v)
	})
	if err != nil {
		return j, err
	}
	s.afterBind(ctx, v)
	s.jobChanged(ctx, j.ID, j.AgentID)
	zerolog.Ctx(ctx).Info().Str("job_id", j.ID).Msg("job created")
	return j, nil
}

// jobsWorkspace is GET /api/jobs/workspace, the jobs list page in one answer: the items of
// GET /api/jobs (same filters and paging), each with the warnings the job page shows, and counts
// over the page for the banners. Scope, filters and each item's scope, health, capabilities and
// latest outcomes are the original's JobsWorkspaceListResponse.
func (s *Server) jobsWorkspace(w http.ResponseWriter, r *http.Request) {
	jobs, pg, total, err := s.readJobList(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	ids := make([]string, 0, len(jobs))
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	outcomes, err := s.db.Reader().JobOutcomesOf(r.Context(), ids)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	type item struct {
		jobJSON
		jobStateJSON
	}
	items := make([]item, 0, len(jobs))
	warned := map[string]int{}
	for _, j := range jobs {
		st := s.jobState(r, j, outcomes[j.ID])
		for _, c := range st.Warnings {
			warned[c]++
		}
		items = append(items, item{jobJSON: j, jobStateJSON: st})
	}
	q := r.URL.Query()
	scope := q.Get("scope")
	if scope == "" {
		scope = "all"
	}
	filters := map[string]any{"q": strings.TrimSpace(q.Get("q")), "latest_status": orAll(q.Get("latest_status")),
		"schedule_mode": orAll(q.Get("schedule_mode")), "include_archived": q.Get("include_archived") != "" && mustBool(q.Get("include_archived")),
		"sort": q.Get("sort")}
	if filters["sort"] == "" {
		filters["sort"] = "updated_desc"
	}
	respond.JSON(w, http.StatusOK, map[string]any{"items": items, "page": pg.page, "page_size": pg.size,
		"total": total, "warnings": warned, "scope": scopeEchoJSON{Requested: scope, Effective: scope}, "filters": filters})
}

func orAll(v string) string {
	if v == "" {
		return "all"
	}
	return v
}

// mustBool is a boolean readJobList has already checked.
func mustBool(v string) bool {
	b, _ := strconv.ParseBool(v)
	return b
}

// jobStateJSON is how a job stands, in the original's terms: where it runs, its health, the
// warnings its pages show, when it last succeeded and failed, and what the caller may do.
type jobStateJSON struct {
	Scope           string          `json:"scope"`
	Health          string          `json:"health"`
	Warnings        []string        `json:"warnings"`
	LatestSuccessAt *int64          `json:"latest_success_at"`
	LatestFailureAt *int64          `json:"latest_failure_at"`
	Capabilities    jobCapabilities `json:"capabilities"`
}

// jobCapabilities are what the caller's role allows on the job as it stands. Deploying clones the
// job to agents by a bulk operation, so it needs the bulk loop and an admin.
type jobCapabilities struct {
	CanRunNow    bool `json:"can_run_now"`
	CanEdit      bool `json:"can_edit"`
	CanArchive   bool `json:"can_archive"`
	CanUnarchive bool `json:"can_unarchive"`
	CanDelete    bool `json:"can_delete"`
	CanDeploy    bool `json:"can_deploy"`
}

// jobState works out a job's state from its list fields and latest outcomes. Health is archived,
// critical (the latest run failed), warning (it has run but never succeeded) or healthy.
func (s *Server) jobState(r *http.Request, j jobJSON, o storage.JobOutcomes) jobStateJSON {
	archived := j.ArchivedAt != nil
	st := jobStateJSON{Scope: nodeScope(j.AgentID), LatestSuccessAt: o.LatestSuccessAt, LatestFailureAt: o.LatestFailureAt,
		Warnings: jobWarnings(archived, j.Schedule, j.LatestRunStatus, o.EverSucceeded)}
	switch {
	case archived:
		st.Health = "archived"
	case slices.Contains(st.Warnings, "latest_run_failed"):
		st.Health = "critical"
	case slices.Contains(st.Warnings, "no_successful_backup"):
		st.Health = "warning"
	default:
		st.Health = "healthy"
	}
	admin := hasRole(r, RoleAdmin)
	st.Capabilities = jobCapabilities{
		CanRunNow:    !archived && hasRole(r, RoleOperator),
		CanEdit:      admin, // this Hub edits archived jobs too
		CanArchive:   !archived && admin,
		CanUnarchive: archived && admin,
		CanDelete:    admin,
		CanDeploy:    !archived && admin && s.cfg.Bulk != nil,
	}
	return st
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	j, ok := s.jobFor(w, r)
	if !ok {
		return
	}
	s.respondJobWithLatestRun(w, r, j)
}

// respondJobWithLatestRun answers a job as GET does: with its latest run's id, status and times.
func (s *Server) respondJobWithLatestRun(w http.ResponseWriter, r *http.Request, j storage.Job) {
	it := storage.JobListItem{Job: j}
	latest, err := s.db.Reader().ListRunsByJob(r.Context(), j.ID, 1)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if len(latest) == 1 {
		l := latest[0]
		it.LatestRunID, it.LatestRunStatus, it.LatestRunStartedAt, it.LatestRunEndedAt = &l.ID, &l.Status, &l.StartedAt, l.EndedAt
	}
	s.respondJob(w, r, it)
}

// respondJob answers a job with its spec and drill fields.
func (s *Server) respondJob(w http.ResponseWriter, r *http.Request, it storage.JobListItem) {
	out, err := s.jobOutRead(r.Context(), it, true)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, out)
}

func (s *Server) updateJob(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	v, ok := s.decodeJob(w, r, false)
	if !ok {
		return
	}
	ctx := r.Context()
	var saved storage.Job
	var oldAgent *string
	err := s.db.Write(ctx, func(q storage.Q) error {
		j, err := q.GetJob(ctx, id)
		if err != nil {
			return err
		}
		oldAgent = j.AgentID
		old, _ := jobspec.Parse([]byte(j.SpecJSON)) // unreadable: treated as no hooks
		if err := authorizeHooks(r, old, v.spec); err != nil {
			return err
		}
		j.Name, j.AgentID, j.Schedule, j.ScheduleTimezone = v.name, v.agentID, v.schedule, v.timezone
		j.OverlapPolicy, j.MissedRunPolicy, j.SpecJSON, j.UpdatedAt = v.overlap, v.missed, string(v.specJSON), s.now().Unix()
		saved = j
		if err := q.UpdateJob(ctx, j); err != nil {
			return err
		}
		if err := q.SetJobVerificationConfig(ctx, id, v.verification, j.UpdatedAt); err != nil {
			return err
		}
		return s.bindJobOrigin(ctx, q, v)
	})
	if err != nil {
		respond.Error(w, r, jobError(err))
		return
	}
	s.afterBind(r.Context(), v)
	s.jobChanged(ctx, id, oldAgent, saved.AgentID)
	zerolog.Ctx(ctx).Info().Str("job_id", id).Msg("job updated")
	// The same answer as GET: an edit does not make the job's runs go away.
	s.respondJobWithLatestRun(w, r, saved)
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	ctx := r.Context()
	var job storage.Job
	var live []string
	err := s.db.Write(ctx, func(q storage.Q) error {
		var err error
		if job, err = q.GetJob(ctx, id); err != nil {
			return err
		}
		if live, err = q.ListLiveRunIDs(ctx, id); err != nil {
			return err
		}
		return q.DeleteJob(ctx, id)
	})
	if err != nil {
		respond.Error(w, r, jobError(err))
		return
	}
	s.cfg.Runs.Abort(ctx, job, live...)
	s.jobChanged(ctx, id, job.AgentID)
	zerolog.Ctx(ctx).Info().Str("job_id", id).Msg("job deleted")
	respond.NoContent(w)
}

// setJobArchived serves archive (archive=true; ?cascade_snapshots=true also queues the deletion
// of the job's unpinned snapshots) and unarchive. Both are idempotent.
func (s *Server) setJobArchived(archive bool) http.HandlerFunc {
	write := storage.Q.UnarchiveJob
	if archive {
		write = storage.Q.ArchiveJob
	}
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		cascade := false
		if v := r.URL.Query().Get("cascade_snapshots"); archive && v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				respond.Error(w, r, respond.BadRequest("invalid_cascade_snapshots", "cascade_snapshots must be true or false").Field("cascade_snapshots"))
				return
			}
			cascade = b
		}
		ctx := r.Context()
		if err := write(s.db.Writer(), ctx, id, s.now().Unix()); err != nil {
			respond.Error(w, r, jobError(err))
			return
		}
		j, err := s.db.Reader().GetJob(ctx, id)
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		s.jobChanged(ctx, id, j.AgentID)
		if cascade {
			if err := s.cascadeSnapshotsOnArchive(ctx, id); err != nil {
				respond.Error(w, r, err)
				return
			}
		}
		respond.NoContent(w)
	}
}

// cascadeSnapshotsOnArchive is the archive-with-cascade hook: it queues the deletion of the
// archived job's unpinned present snapshots through the snapshot service (a no-op without one).
func (s *Server) cascadeSnapshotsOnArchive(ctx context.Context, jobID string) error {
	if s.cfg.Snapshots == nil {
		return nil
	}
	n, err := s.cfg.Snapshots.CascadeArchive(ctx, jobID)
	if err != nil {
		return fmt.Errorf("queue snapshot deletes of archived job %s: %w", jobID, err)
	}
	zerolog.Ctx(ctx).Info().Str("job_id", jobID).Int("deletes", n).Msg("archived job's snapshots queued for deletion")
	return nil
}

// jobChanged wakes the scheduler and tells the agents hook which agents' configuration changed.
func (s *Server) jobChanged(ctx context.Context, jobID string, agents ...*string) {
	if s.cfg.Scheduler != nil {
		s.cfg.Scheduler.JobChanged(jobID)
	}
	if s.cfg.Drills != nil {
		s.cfg.Drills.JobChanged(jobID)
	}
	if s.cfg.OnJobChanged == nil {
		return
	}
	var ids []string
	seen := map[string]bool{}
	for _, a := range agents {
		if a != nil && !seen[*a] {
			seen[*a] = true
			ids = append(ids, *a)
		}
	}
	s.cfg.OnJobChanged(ctx, jobID, ids)
}

func (s *Server) runJobNow(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	run, err := s.cfg.Runs.Trigger(r.Context(), id, runs.SourceManual)
	switch {
	case errors.Is(err, runs.ErrJobArchived):
		respond.Error(w, r, respond.Conflict("job_archived", "the job is archived; unarchive it to run it"))
		return
	case errors.Is(err, storage.ErrAgentRevoked):
		respond.Error(w, r, respond.Conflict("agent_revoked", "the job's agent was revoked; bind the job to another node to run it"))
		return
	case err != nil:
		respond.Error(w, r, jobError(err))
		return
	}
	if s.cfg.Scheduler != nil {
		s.cfg.Scheduler.Wake() // running a job by hand is one of the scheduler's wake-ups
	}
	zerolog.Ctx(r.Context()).Info().Str("job_id", id).Str("run_id", run.ID).Str("status", run.Status).Msg("run requested")
	respond.JSON(w, http.StatusOK, map[string]string{"run_id": run.ID, "status": run.Status})
}

// runListJSON is a run in a list.
type runListJSON struct {
	ID                string  `json:"id"`
	JobID             string  `json:"job_id"`
	Status            string  `json:"status"`
	StartedAt         int64   `json:"started_at"`
	EndedAt           *int64  `json:"ended_at"`
	Error             *string `json:"error"`
	CancelRequestedAt *int64  `json:"cancel_requested_at"`
	CancelReason      *string `json:"cancel_reason"`
}

// jobRunJSON is an item of GET /api/jobs/{id}/runs, with the original's two summary flags:
// whether an agent ran it offline, and how many files changed while they were read (0 when the
// summary says nothing of it).
type jobRunJSON struct {
	runListJSON
	ExecutedOffline         bool  `json:"executed_offline"`
	ConsistencyChangedTotal int64 `json:"consistency_changed_total"`
}

func (s *Server) listJobRuns(w http.ResponseWriter, r *http.Request) {
	j, ok := s.jobFor(w, r)
	if !ok {
		return
	}
	list, err := s.db.Reader().ListRunsByJob(r.Context(), j.ID, maxJobRuns)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	ids := make([]string, 0, len(list))
	for _, x := range list {
		ids = append(ids, x.ID)
	}
	offline, err := s.db.Reader().OfflineRunIDs(r.Context(), ids)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out := make([]jobRunJSON, 0, len(list))
	for _, x := range list {
		var changed int64
		if d := digestSummary(x.SummaryJSON); d.ConsistencyTotal != nil {
			changed = *d.ConsistencyTotal
		}
		out = append(out, jobRunJSON{runListJSON: runListJSON{ID: x.ID, JobID: x.JobID, Status: x.Status, StartedAt: x.StartedAt,
			EndedAt: x.EndedAt, Error: x.Error, CancelRequestedAt: x.CancelRequestedAt, CancelReason: x.CancelReason},
			ExecutedOffline: offline[x.ID], ConsistencyChangedTotal: changed})
	}
	respond.JSON(w, http.StatusOK, out)
}

// previewSchedule answers GET /api/schedule/preview?cron&timezone&count&after with the next
// trigger instants strictly after `after`, computed by the scheduler's own code.
func (s *Server) previewSchedule(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tz := strings.TrimSpace(q.Get("timezone"))
	if tz == "" {
		tz = s.cfg.HubTimezone
	}
	loc, err := schedule.LoadLocation(tz)
	if err != nil {
		respond.Error(w, r, respond.BadRequest("invalid_timezone", fmt.Sprintf("timezone %q is not an IANA time zone", tz)).
			Reason("invalid_value").Field("timezone"))
		return
	}
	sched, err := schedule.Parse(strings.TrimSpace(q.Get("cron")), loc)
	if err != nil {
		reason := "invalid_format"
		if errors.Is(err, schedule.ErrNeverFires) {
			reason = "never_fires"
		}
		respond.Error(w, r, respond.BadRequest("invalid_schedule", err.Error()).Reason(reason).Field("cron"))
		return
	}
	count := defaultPreviewCount
	if v := q.Get("count"); v != "" {
		if count, err = strconv.Atoi(v); err != nil || count < 1 || count > maxPreviewCount {
			respond.Error(w, r, respond.BadRequest("invalid_count", fmt.Sprintf("count must be within 1..%d", maxPreviewCount)).Field("count"))
			return
		}
	}
	after := s.now()
	if v := q.Get("after"); v != "" {
		if after, err = time.Parse(time.RFC3339, v); err != nil {
			respond.Error(w, r, respond.BadRequest("invalid_after", "after must be an RFC 3339 time").Field("after"))
			return
		}
	}
	times := make([]string, 0, count)
	for _, t := range sched.Preview(after, count) {
		times = append(times, t.In(loc).Format(time.RFC3339))
	}
	respond.JSON(w, http.StatusOK, map[string][]string{"times": times})
}

// endpointField is the target field holding the URL a credential is sent to, for error envelopes:
// the first of the target object's fields whose value is that URL ("base_url" for WebDAV).
func endpointField(t jobspec.Target) string {
	var fields map[string]any
	if b, err := json.Marshal(t.Config); err == nil && json.Unmarshal(b, &fields) == nil {
		for _, k := range slices.Sorted(maps.Keys(fields)) {
			if fields[k] == t.Config.Endpoint() {
				return k
			}
		}
	}
	return "endpoint"
}

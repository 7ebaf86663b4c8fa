package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// Event console bounds: a page holds 1..maxConsoleLimit events, and a filter names at most
// maxConsoleFilter values (each is a bound SQL parameter).
const (
	defaultConsoleLimit = 100
	maxConsoleLimit     = 500
	maxConsoleFilter    = 32
	workspaceRuns       = 20 // latest runs in a run's or a job's workspace
)

// consoleFilterValues reads a filter that may come as repeated parameters, comma lists, or both,
// under its plural and singular names (levels=info,error&level=warn).
func consoleFilterValues(q map[string][]string, names ...string) ([]string, error) {
	var out []string
	for _, name := range names {
		for _, v := range q[name] {
			for _, part := range strings.Split(v, ",") {
				if part = strings.TrimSpace(part); part == "" || slices.Contains(out, part) {
					continue
				}
				// Refuse as soon as the cap is passed: the dedupe is quadratic, and a query
				// string may carry hundreds of thousands of values.
				if len(out) == maxConsoleFilter {
					return nil, respond.BadRequest("invalid_filter", names[0]+" names too many values").Field(names[0])
				}
				out = append(out, part)
			}
		}
	}
	return out, nil
}

// readSeqParam reads an optional sequence-number cursor (0 when absent).
func readSeqParam(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, respond.BadRequest("invalid_cursor", name+" must be a sequence number ≥ 1").Field(name)
	}
	return n, nil
}

// eventConsoleJSON is GET /api/runs/{id}/event-console.
type eventConsoleJSON struct {
	RunID    string      `json:"run_id"`
	Events   []eventJSON `json:"events"`
	FirstSeq *int64      `json:"first_seq"`
	LastSeq  *int64      `json:"last_seq"`
	HasOlder bool        `json:"has_older"`
	HasNewer bool        `json:"has_newer"`
	Limit    int         `json:"limit"`
	Filters  struct {
		Q      string   `json:"q"`
		Levels []string `json:"levels"`
		Kinds  []string `json:"kinds"`
	} `json:"filters"`
	Summary eventSummaryJSON `json:"summary"`

	// The original's RunEventConsoleResponse: the same page as items, where it lies as window,
	// and where the first error is as locators. filters.q is its text filter.
	Items    []eventJSON       `json:"items"`
	Window   eventWindowJSON   `json:"window"`
	Locators eventLocatorsJSON `json:"locators"`
}

type eventWindowJSON struct {
	FirstSeq *int64 `json:"first_seq,omitempty"`
	LastSeq  *int64 `json:"last_seq,omitempty"`
	HasOlder bool   `json:"has_older"`
	HasNewer bool   `json:"has_newer"`
}

// eventLocatorsJSON points at the run's first failure event, whatever the filters; the root
// cause is taken to be that first failure (nothing finer is recorded).
type eventLocatorsJSON struct {
	FirstErrorSeq *int64 `json:"first_error_seq,omitempty"`
	RootCauseSeq  *int64 `json:"root_cause_seq,omitempty"`
}

// readAnchor reads the original's anchor of the event console: tail (the newest page, the
// default), first_error, or seq:<n>. It returns the seq the page starts at, 0 for the tail.
func readAnchor(v string, firstError *storage.RunEvent) (int64, error) {
	switch v = strings.TrimSpace(v); {
	case v == "" || v == "tail":
		return 0, nil
	case v == "first_error":
		if firstError == nil {
			return 0, nil // nothing failed: the tail, as the original answers
		}
		return firstError.Seq, nil
	case strings.HasPrefix(v, "seq:"):
		if n, err := strconv.ParseInt(v[len("seq:"):], 10, 64); err == nil && n > 0 {
			return n, nil
		}
	}
	return 0, respond.BadRequest("invalid_anchor", "anchor must be tail, first_error or seq:<n>").Field("anchor").Reason("unsupported_value")
}

// eventSummaryJSON describes a run's whole event log, whatever the filters: what the console's
// filter menus offer, and how far the log goes.
type eventSummaryJSON struct {
	Total   int64            `json:"total"`
	MaxSeq  int64            `json:"max_seq"`
	ByLevel map[string]int64 `json:"by_level"`
	Kinds   []string         `json:"kinds"`
}

func eventSummaryOut(st storage.EventStats) eventSummaryJSON {
	return eventSummaryJSON{Total: st.Total, MaxSeq: st.MaxSeq, ByLevel: st.ByLevel, Kinds: st.Kinds}
}

// runEventConsole answers a page of a run's events, filtered by level and kind, for the console
// view: the newest page by default, older ones with before_seq, newer ones with after_seq.
func (s *Server) runEventConsole(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	q := r.URL.Query()
	var win storage.EventWindow
	var err error
	if win.Levels, err = consoleFilterValues(q, "levels", "level"); err != nil {
		respond.Error(w, r, err)
		return
	}
	if win.Kinds, err = consoleFilterValues(q, "kinds", "kind"); err != nil {
		respond.Error(w, r, err)
		return
	}
	if win.BeforeSeq, err = readSeqParam(r, "before_seq"); err != nil {
		respond.Error(w, r, err)
		return
	}
	if win.AfterSeq, err = readSeqParam(r, "after_seq"); err != nil {
		respond.Error(w, r, err)
		return
	}
	if win.BeforeSeq > 0 && win.AfterSeq > 0 {
		respond.Error(w, r, respond.BadRequest("invalid_cursor", "send before_seq or after_seq, not both").Field("before_seq"))
		return
	}
	win.Limit = defaultConsoleLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxConsoleLimit {
			respond.Error(w, r, respond.BadRequest("invalid_limit", "limit must be 1.."+strconv.Itoa(maxConsoleLimit)).Field("limit"))
			return
		}
		win.Limit = n
	}
	win.Query = strings.TrimSpace(q.Get("q"))
	if !s.runExists(w, r, id) {
		return
	}
	var page storage.EventPage
	var st storage.EventStats
	var firstErr *storage.RunEvent
	err = s.db.Read(r.Context(), func(q storage.Q) error {
		var err error
		if firstErr, err = q.FirstErrorEvent(r.Context(), id); err != nil {
			return err
		}
		if win.AfterSeq == 0 && win.BeforeSeq == 0 {
			if win.FromSeq, err = readAnchor(r.URL.Query().Get("anchor"), firstErr); err != nil {
				return err
			}
		}
		if page, err = q.ListRunEventWindow(r.Context(), id, win); err != nil {
			return err
		}
		st, err = q.RunEventStats(r.Context(), id)
		return err
	})
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out := eventConsoleJSON{RunID: id, Events: make([]eventJSON, 0, len(page.Events)), HasOlder: page.HasOlder,
		HasNewer: page.HasNewer, Limit: win.Limit, Summary: eventSummaryOut(st)}
	for _, e := range page.Events {
		out.Events = append(out.Events, eventOut(e))
	}
	if n := len(page.Events); n > 0 {
		out.FirstSeq, out.LastSeq = ptrTo(page.Events[0].Seq), ptrTo(page.Events[n-1].Seq)
	}
	out.Items = out.Events
	out.Window = eventWindowJSON{FirstSeq: out.FirstSeq, LastSeq: out.LastSeq, HasOlder: page.HasOlder, HasNewer: page.HasNewer}
	if firstErr != nil {
		out.Locators = eventLocatorsJSON{FirstErrorSeq: &firstErr.Seq, RootCauseSeq: &firstErr.Seq}
	}
	out.Filters.Q, out.Filters.Levels, out.Filters.Kinds = win.Query, nonNil(win.Levels), nonNil(win.Kinds)
	respond.JSON(w, http.StatusOK, out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// runListOut is a run as the job's run list shows it.
func runListOut(x storage.Run) runListJSON {
	return runListJSON{ID: x.ID, JobID: x.JobID, Status: x.Status, StartedAt: x.StartedAt, EndedAt: x.EndedAt,
		Error: x.Error, CancelRequestedAt: x.CancelRequestedAt, CancelReason: x.CancelReason}
}

// jobWithRuns reads a job's latest runs and its JSON (spec and drill fields), the latest run's
// fields filled from the first of those runs.
func (s *Server) jobWithRuns(r *http.Request, j storage.Job) (jobJSON, []runListJSON, error) {
	list, err := s.db.Reader().ListRunsByJob(r.Context(), j.ID, workspaceRuns)
	if err != nil {
		return jobJSON{}, nil, err
	}
	it := storage.JobListItem{Job: j}
	if len(list) > 0 {
		l := list[0]
		it.LatestRunID, it.LatestRunStatus, it.LatestRunStartedAt, it.LatestRunEndedAt = &l.ID, &l.Status, &l.StartedAt, l.EndedAt
	}
	job, err := s.jobOutRead(r.Context(), it, true)
	if err != nil {
		return jobJSON{}, nil, err
	}
	runs := make([]runListJSON, 0, len(list))
	for _, x := range list {
		runs = append(runs, runListOut(x))
	}
	return job, runs, nil
}

// runWorkspaceJSON is GET /api/runs/{id}/workspace: what the run page shows, in one answer.
// Progress, summary, diagnostics, capabilities and related are the original's
// RunWorkspaceResponse.
type runWorkspaceJSON struct {
	Run          workspaceRunJSON  `json:"run"`
	Job          *jobJSON          `json:"job"`
	RecentRuns   []runListJSON     `json:"recent_runs"`
	Events       eventSummaryJSON  `json:"events"`
	Progress     json.RawMessage   `json:"progress"`
	Summary      json.RawMessage   `json:"summary"`
	Diagnostics  runDiagnostics    `json:"diagnostics"`
	Capabilities runCapabilities   `json:"capabilities"`
	Related      runRelatedSummary `json:"related"`
}

// workspaceRunJSON is the run of its workspace: GET /api/runs/{id} plus what it did and where
// it ran in the original's terms.
type workspaceRunJSON struct {
	runJSON
	Kind  string `json:"kind"`
	Scope string `json:"scope"`
}

// runDiagnostics is the original's structured root cause of a run: state is structured when
// anything below was found (a failure event, a stage, a kind), fallback otherwise.
type runDiagnostics struct {
	State              string  `json:"state"`
	FailureKind        *string `json:"failure_kind,omitempty"`
	FailureStage       *string `json:"failure_stage,omitempty"`
	FailureTitle       string  `json:"failure_title"`
	FailureHint        *string `json:"failure_hint,omitempty"`
	FirstErrorEventSeq *int64  `json:"first_error_event_seq,omitempty"`
	RootCauseEventSeq  *int64  `json:"root_cause_event_seq,omitempty"`
}

// runCapabilities are what the caller may do with the run now: its state allows it and the
// caller's role does.
type runCapabilities struct {
	CanCancel  bool `json:"can_cancel"`
	CanRestore bool `json:"can_restore"`
	CanVerify  bool `json:"can_verify"`
}

type runRelatedSummary struct {
	OperationsTotal int64 `json:"operations_total"`
	ArtifactsTotal  int64 `json:"artifacts_total"`
}

// diagnose reads a run's root cause from its first failure event and its progress. Both may
// come from an agent: a field of an unexpected shape counts as absent.
func diagnose(run runJSON, first *storage.RunEvent) runDiagnostics {
	var d runDiagnostics
	str := func(raw json.RawMessage, path ...string) *string {
		for _, key := range path {
			var m map[string]json.RawMessage
			if json.Unmarshal(raw, &m) != nil {
				return nil
			}
			raw = m[key]
		}
		var v string
		if json.Unmarshal(raw, &v) != nil {
			return nil
		}
		return &v
	}
	var fields json.RawMessage
	if first != nil && first.FieldsJSON != nil {
		fields = json.RawMessage(*first.FieldsJSON)
	}
	d.FailureKind = str(fields, "error_envelope", "kind")
	if d.FailureKind == nil {
		d.FailureKind = run.Error
	}
	d.FailureHint = str(fields, "hint")
	if d.FailureStage = str(run.Progress, "stage"); d.FailureStage == nil {
		d.FailureStage = str(fields, "stage")
	}
	switch {
	case first != nil:
		d.FailureTitle = first.Message
		d.FirstErrorEventSeq, d.RootCauseEventSeq = &first.Seq, &first.Seq
	case run.Error != nil:
		d.FailureTitle = *run.Error
	case run.Status == storage.RunSuccess:
		d.FailureTitle = "Run succeeded"
	case run.Status == storage.RunCanceled:
		d.FailureTitle = "Run was canceled"
	default:
		d.FailureTitle = "No diagnostics for this run"
	}
	d.State = "fallback"
	if d.FirstErrorEventSeq != nil || d.FailureStage != nil || d.FailureKind != nil {
		d.State = "structured"
	}
	return d
}

func (s *Server) runWorkspace(w http.ResponseWriter, r *http.Request) {
	run, err := s.runDetail(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	scope := "hub"
	if run.NodeID != "hub" {
		scope = "agent:" + run.NodeID
	}
	var progress *string
	if len(run.Progress) > 0 && string(run.Progress) != "null" {
		progress = ptrTo(string(run.Progress))
	}
	out := runWorkspaceJSON{Run: workspaceRunJSON{runJSON: run, Kind: runKindOf(progress), Scope: scope},
		RecentRuns: []runListJSON{}, Progress: run.Progress, Summary: run.Summary}
	operator := hasRole(r, RoleOperator)
	out.Capabilities = runCapabilities{
		CanCancel:  operator && (run.Status == storage.RunQueued || run.Status == storage.RunRunning) && run.CancelRequestedAt == nil,
		CanRestore: operator && run.Status == storage.RunSuccess,
		CanVerify:  operator && run.Status == storage.RunSuccess,
	}
	err = s.db.Read(r.Context(), func(q storage.Q) error {
		first, err := q.FirstErrorEvent(r.Context(), run.ID)
		if err != nil {
			return err
		}
		out.Diagnostics = diagnose(run, first)
		out.Related.OperationsTotal, out.Related.ArtifactsTotal, err = q.RunRelatedCounts(r.Context(), run.ID)
		return err
	})
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	j, err := s.db.Reader().GetJob(r.Context(), run.JobID)
	switch {
	case errors.Is(err, storage.ErrNotFound): // the run outlived its job: the run page still opens
	case err != nil:
		respond.Error(w, r, err)
		return
	default:
		job, runs, err := s.jobWithRuns(r, j)
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		out.Job, out.RecentRuns = &job, runs
	}
	st, err := s.db.Reader().RunEventStats(r.Context(), run.ID)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out.Events = eventSummaryOut(st)
	respond.JSON(w, http.StatusOK, out)
}

// jobWorkspaceJSON is GET /api/jobs/{id}/workspace: what the job page shows, in one answer.
// Summary, readiness, capabilities and recent_runs (the same list as runs) are the original's
// JobWorkspaceResponse.
type jobWorkspaceJSON struct {
	Job  jobJSON       `json:"job"`
	Runs []runListJSON `json:"runs"`
	// LatestRunEvents summarises the latest run's event log; null when the job never ran.
	LatestRunEvents *eventSummaryJSON `json:"latest_run_events"`
	// Warnings are codes the page shows as banners (jobWarnings).
	Warnings     []string        `json:"warnings"`
	Summary      jobSummaryJSON  `json:"summary"`
	Readiness    jobReadiness    `json:"readiness"`
	Capabilities jobCapabilities `json:"capabilities"`
	RecentRuns   []runListJSON   `json:"recent_runs"`
}

type jobSummaryJSON struct {
	LatestSuccessAt    *int64  `json:"latest_success_at"`
	LatestFailureAt    *int64  `json:"latest_failure_at"`
	LatestRunStatus    *string `json:"latest_run_status"`
	LatestRunStartedAt *int64  `json:"latest_run_started_at"`
	LatestRunEndedAt   *int64  `json:"latest_run_ended_at"`
	NextRunAt          *int64  `json:"next_run_at"`
	// TargetLabel is where the target sends data (its endpoint URL) or, for a directory of the
	// node, that directory; null for a target no driver reads.
	TargetLabel *string `json:"target_label"`
	TargetType  *string `json:"target_type"`
	// ScheduleLabel is the cron expression; null for a job run by hand.
	ScheduleLabel *string `json:"schedule_label"`
}

type jobReadiness struct {
	State         string `json:"state"` // the job's health
	LastSuccessAt *int64 `json:"last_success_at"`
}

// jobTarget is the type and label of a job's target, read by its driver.
func jobTarget(spec json.RawMessage) (typ, label *string) {
	sp, err := jobspec.Parse(spec)
	if err != nil || sp.Target.Type == "" {
		return nil, nil
	}
	typ = &sp.Target.Type
	if c := sp.Target.Config; c != nil {
		if e := c.Endpoint(); e != "" {
			label = &e
		} else if lp, ok := c.(targets.LocalPath); ok {
			label = ptrTo(lp.LocalPath())
		}
	}
	return typ, label
}

func (s *Server) jobWorkspace(w http.ResponseWriter, r *http.Request) {
	j, ok := s.jobFor(w, r)
	if !ok {
		return
	}
	job, runs, err := s.jobWithRuns(r, j)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out := jobWorkspaceJSON{Job: job, Runs: runs}
	if len(runs) > 0 {
		st, err := s.db.Reader().RunEventStats(r.Context(), runs[0].ID)
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		sum := eventSummaryOut(st)
		out.LatestRunEvents = &sum
	}
	outcomes, err := s.db.Reader().JobOutcomesOf(r.Context(), []string{j.ID})
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	o := outcomes[j.ID]
	st := s.jobState(r, job, o)
	out.Warnings, out.Capabilities, out.RecentRuns = st.Warnings, st.Capabilities, runs
	out.Readiness = jobReadiness{State: st.Health, LastSuccessAt: o.LatestSuccessAt}
	out.Summary = jobSummaryJSON{LatestSuccessAt: o.LatestSuccessAt, LatestFailureAt: o.LatestFailureAt,
		LatestRunStatus: job.LatestRunStatus, LatestRunStartedAt: job.LatestRunStartedAt, LatestRunEndedAt: job.LatestRunEndedAt,
		NextRunAt: job.NextRunAt, ScheduleLabel: j.Schedule}
	out.Summary.TargetType, out.Summary.TargetLabel = jobTarget(json.RawMessage(j.SpecJSON))
	respond.JSON(w, http.StatusOK, out)
}

// jobWarnings are the codes a job's pages show as banners, in this order (never null):
// latest_run_failed; no_successful_backup (it has run, and never successfully); archived;
// manual_only (the original's name) and no_schedule (ours) for a job without a schedule.
func jobWarnings(archived bool, schedule, latestStatus *string, everSucceeded bool) []string {
	out := []string{}
	if latestStatus != nil && *latestStatus == storage.RunFailed {
		out = append(out, "latest_run_failed")
	}
	if latestStatus != nil && !everSucceeded {
		out = append(out, "no_successful_backup")
	}
	if archived {
		out = append(out, "archived")
	}
	if schedule == nil || *schedule == "" {
		out = append(out, "manual_only", "no_schedule")
	}
	return out
}

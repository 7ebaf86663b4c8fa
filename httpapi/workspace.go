package httpapi

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

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
		Levels []string `json:"levels"`
		Kinds  []string `json:"kinds"`
	} `json:"filters"`
	Summary eventSummaryJSON `json:"summary"`
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
	if !s.runExists(w, r, id) {
		return
	}
	var page storage.EventPage
	var st storage.EventStats
	err = s.db.Read(r.Context(), func(q storage.Q) error {
		var err error
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
	out.Filters.Levels, out.Filters.Kinds = nonNil(win.Levels), nonNil(win.Kinds)
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
type runWorkspaceJSON struct {
	Run        runJSON          `json:"run"`
	Job        *jobJSON         `json:"job"`
	RecentRuns []runListJSON    `json:"recent_runs"`
	Events     eventSummaryJSON `json:"events"`
}

func (s *Server) runWorkspace(w http.ResponseWriter, r *http.Request) {
	run, err := s.runDetail(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out := runWorkspaceJSON{Run: run, RecentRuns: []runListJSON{}}
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
type jobWorkspaceJSON struct {
	Job  jobJSON       `json:"job"`
	Runs []runListJSON `json:"runs"`
	// LatestRunEvents summarises the latest run's event log; null when the job never ran.
	LatestRunEvents *eventSummaryJSON `json:"latest_run_events"`
	// Warnings are codes the page shows as banners: archived, latest_run_failed, no_schedule.
	Warnings []string `json:"warnings"`
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
	var latest *string
	out := jobWorkspaceJSON{Job: job, Runs: runs}
	if len(runs) > 0 {
		st, err := s.db.Reader().RunEventStats(r.Context(), runs[0].ID)
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		sum := eventSummaryOut(st)
		out.LatestRunEvents = &sum
		latest = &runs[0].Status
	}
	out.Warnings = jobWarnings(j.ArchivedAt != nil, j.Schedule, latest)
	respond.JSON(w, http.StatusOK, out)
}

// jobWarnings are the codes a job's pages show as banners: latest_run_failed, archived,
// no_schedule (in that order; never null).
func jobWarnings(archived bool, schedule, latestStatus *string) []string {
	out := []string{}
	if latestStatus != nil && *latestStatus == storage.RunFailed {
		out = append(out, "latest_run_failed")
	}
	if archived {
		out = append(out, "archived")
	}
	if schedule == nil || *schedule == "" {
		out = append(out, "no_schedule")
	}
	return out
}

package httpapi

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// Bounds of GET /api/runs.
const (
	defaultRunsLimit = 50
	maxRunsLimit     = 200
)

// runsParams are the query parameters of GET /api/runs. Any other is refused: a misspelt filter
// that is silently dropped lists the wrong runs.
var runsParams = map[string]bool{
	"status": true, "job_id": true, "node_id": true, "from": true, "to": true, "cursor": true, "limit": true,
}

// globalRunJSON is an item of GET /api/runs: a job's run list item plus where it ran and the
// warning digest of the original's runs list.
type globalRunJSON struct {
	runListJSON
	JobName         string `json:"job_name"`
	NodeID          string `json:"node_id"`
	ExecutedOffline bool   `json:"executed_offline"`
	runDigest
}

// runDigest counts what a run's summary reports, null when the summary says nothing of it.
// consistency_total is every file that changed while it was read (changed + replaced + deleted +
// read_error, filesystem and vaultwarden sources together); consistency_signal_total leaves out
// the plain "changed" ones, as the original does: a replaced, deleted or unreadable file is the
// high-signal case.
type runDigest struct {
	IssuesWarningsTotal    *int64 `json:"issues_warnings_total"`
	IssuesErrorsTotal      *int64 `json:"issues_errors_total"`
	ConsistencyTotal       *int64 `json:"consistency_total"`
	ConsistencySignalTotal *int64 `json:"consistency_signal_total"`
}

type consistencyCounts struct {
	ChangedTotal   int64 `json:"changed_total"`
	ReplacedTotal  int64 `json:"replaced_total"`
	DeletedTotal   int64 `json:"deleted_total"`
	ReadErrorTotal int64 `json:"read_error_total"`
}

// digestSummary reads the digest out of a stored summary. A summary may come from an agent, so
// any shape it does not expect counts as saying nothing.
func digestSummary(summary *string) runDigest {
	var d runDigest
	if summary == nil {
		return d
	}
	var s struct {
		Filesystem *struct {
			WarningsTotal *int64          `json:"warnings_total"`
			ErrorsTotal   *int64          `json:"errors_total"`
			Consistency   json.RawMessage `json:"consistency"`
		} `json:"filesystem"`
		Vaultwarden *struct {
			Consistency json.RawMessage `json:"consistency"`
		} `json:"vaultwarden"`
	}
	if json.Unmarshal([]byte(*summary), &s) != nil {
		return d
	}
	var reports []json.RawMessage
	if s.Filesystem != nil {
		d.IssuesWarningsTotal, d.IssuesErrorsTotal = s.Filesystem.WarningsTotal, s.Filesystem.ErrorsTotal
		reports = append(reports, s.Filesystem.Consistency)
	}
	if s.Vaultwarden != nil {
		reports = append(reports, s.Vaultwarden.Consistency)
	}
	for _, raw := range reports {
		var c *consistencyCounts
		if len(raw) == 0 || json.Unmarshal(raw, &c) != nil || c == nil {
			continue
		}
		signal := c.ReplacedTotal + c.DeletedTotal + c.ReadErrorTotal
		total := c.ChangedTotal + signal
		if d.ConsistencyTotal == nil {
			d.ConsistencyTotal, d.ConsistencySignalTotal = new(int64), new(int64)
		}
		*d.ConsistencyTotal += total
		*d.ConsistencySignalTotal += signal
	}
	return d
}

// readRunFilter reads the filters of GET /api/runs.
func readRunFilter(r *http.Request) (storage.RunFilter, *storage.RunCursor, int, error) {
	var f storage.RunFilter
	q := r.URL.Query()
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if !runsParams[name] {
			return f, nil, 0, respond.BadRequest("invalid_query", "unknown query parameter "+strconv.Quote(name)).Field(name).Reason("unknown_parameter")
		}
	}
	for _, v := range strings.Split(q.Get("status"), ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !runStatuses[v] {
			return f, nil, 0, respond.BadRequest("invalid_status", "status must be one or more of queued, running, success, failed, rejected, canceled (comma-separated)").Field("status")
		}
		if !slices.Contains(f.Statuses, v) {
			f.Statuses = append(f.Statuses, v)
		}
	}
	f.JobID, f.NodeID = strings.TrimSpace(q.Get("job_id")), strings.TrimSpace(q.Get("node_id"))
	if err := readTimeRange(q, &f.From, &f.To); err != nil {
		return f, nil, 0, err
	}
	limit, err := readCursorLimit(q, defaultRunsLimit, maxRunsLimit)
	if err != nil {
		return f, nil, 0, err
	}
	var cur *storage.RunCursor
	if v := q.Get("cursor"); v != "" {
		at, id, ok := decodeKeyset(v)
		if !ok {
			return f, nil, 0, respond.BadRequest("invalid_cursor", "cursor is not one this API handed out").Field("cursor")
		}
		cur = &storage.RunCursor{StartedAt: at, ID: id}
	}
	return f, cur, limit, nil
}

// listRuns is GET /api/runs: runs of every job and node, newest first, a page at a time.
func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	f, cur, limit, err := readRunFilter(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	page, err := s.db.Reader().ListRuns(r.Context(), f, cur, limit+1)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	var next *string
	if len(page) > limit {
		page = page[:limit]
		last := page[len(page)-1]
		c := encodeKeyset(last.StartedAt, last.ID)
		next = &c
	}
	items := make([]globalRunJSON, 0, len(page))
	for _, x := range page {
		it := globalRunJSON{
			runListJSON: runListJSON{ID: x.ID, JobID: x.JobID, Status: x.Status, StartedAt: x.StartedAt, EndedAt: x.EndedAt,
				Error: x.Error, CancelRequestedAt: x.CancelRequestedAt, CancelReason: x.CancelReason},
			JobName: x.JobName, NodeID: "hub", ExecutedOffline: x.ExecutedOffline, runDigest: digestSummary(x.SummaryJSON),
		}
		if x.AgentID != nil {
			it.NodeID = *x.AgentID
		}
		items = append(items, it)
	}
	respond.JSON(w, http.StatusOK, map[string]any{"items": items, "next_cursor": next})
}

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
	// the original's names
	"scope": true, "kind": true, "range": true, "q": true, "page": true, "page_size": true,
}

// globalRunJSON is an item of GET /api/runs: a job's run list item plus where it ran, what it
// did (the original's RunWorkspaceListItem) and the warning digest of the original's runs list.
type globalRunJSON struct {
	runListJSON
	JobName  string  `json:"job_name"`
	NodeID   string  `json:"node_id"`
	NodeName *string `json:"node_name,omitempty"`
	Scope    string  `json:"scope"`
	Kind     string  `json:"kind"`
	// FailureTitle is the run's error, as in the original's list.
	FailureTitle    *string `json:"failure_title,omitempty"`
	ExecutedOffline bool    `json:"executed_offline"`
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

// runsQuery is a request of GET /api/runs: its filter and how it pages. Two ways of paging are
// served: ours (cursor, limit; next_cursor in the answer) and the original's numbered pages
// (page, page_size), chosen by which parameters the request sends.
type runsQuery struct {
	f       storage.RunFilter
	cur     *storage.RunCursor
	limit   int
	pg      pageRequest // pg.paged: numbered pages
	scope   string      // the scope the filter means: all, hub or agent:<id>
	rangeID string      // 24h, 7d, 30d, or all when the request named no range
}

// runRanges are the original's time windows of the runs list, back from now.
var runRanges = map[string]int64{"24h": 24 * 3600, "7d": 7 * 24 * 3600, "30d": 30 * 24 * 3600}

// runKinds are what a run did, as its progress names it.
var runKinds = map[string]bool{"backup": true, "restore": true, "verify": true, "cleanup": true}

// readRunFilter reads the filters and paging of GET /api/runs.
func (s *Server) readRunFilter(r *http.Request) (runsQuery, error) {
	var rq runsQuery
	f := &rq.f
	q := r.URL.Query()
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if !runsParams[name] {
			return rq, respond.BadRequest("invalid_query", "unknown query parameter "+strconv.Quote(name)).Field(name).Reason("unknown_parameter")
		}
	}
	for _, v := range strings.Split(q.Get("status"), ",") {
		v = strings.TrimSpace(v)
		if v == "" || v == "all" {
			continue
		}
		if !runStatuses[v] {
			return rq, respond.BadRequest("invalid_status", "status must be one or more of queued, running, success, failed, rejected, canceled (comma-separated)").Field("status")
		}
		if !slices.Contains(f.Statuses, v) {
			f.Statuses = append(f.Statuses, v)
		}
	}
	f.JobID, f.NodeID = strings.TrimSpace(q.Get("job_id")), strings.TrimSpace(q.Get("node_id"))
	// scope is the original's name for node_id: all, hub or agent:<id>.
	if scope := strings.TrimSpace(q.Get("scope")); scope != "" && scope != "all" {
		if f.NodeID != "" {
			return rq, respond.BadRequest("invalid_query", "send scope or node_id, not both").Field("scope")
		}
		sc, err := parseScope(scope)
		if err != nil {
			return rq, err
		}
		f.NodeID = sc.agent
		if f.NodeID == "" {
			f.NodeID = "hub"
		}
	}
	switch f.NodeID {
	case "":
		rq.scope = "all"
	case "hub":
		rq.scope = "hub"
	default:
		rq.scope = "agent:" + f.NodeID
	}
	switch k := strings.TrimSpace(q.Get("kind")); {
	case k == "" || k == "all":
	case runKinds[k]:
		f.Kind = k
	default:
		return rq, respond.BadRequest("invalid_kind", "kind must be backup, restore, verify or cleanup").Field("kind").Reason("unsupported_value")
	}
	f.Query = strings.TrimSpace(q.Get("q"))
	if err := readTimeRange(q, &f.From, &f.To); err != nil {
		return rq, err
	}
	rq.rangeID = "all"
	if v := strings.TrimSpace(q.Get("range")); v != "" {
		secs, ok := runRanges[v]
		if !ok {
			return rq, respond.BadRequest("invalid_range", "range must be 24h, 7d or 30d").Field("range").Reason("unsupported_value")
		}
		if f.From != nil || f.To != nil {
			return rq, respond.BadRequest("invalid_query", "send range or from/to, not both").Field("range")
		}
		now := s.now().Unix()
		from, to := now-secs, now+1 // the original's window includes now; To is exclusive
		f.From, f.To, rq.rangeID = &from, &to, v
	}
	var err error
	if rq.pg, err = readPage(r); err != nil {
		return rq, err
	}
	if rq.pg.paged {
		if q.Has("cursor") || q.Has("limit") {
			return rq, respond.BadRequest("invalid_query", "send cursor/limit or page/page_size, not both").Field("cursor")
		}
		rq.limit = rq.pg.size
		return rq, nil
	}
	if rq.limit, err = readCursorLimit(q, defaultRunsLimit, maxRunsLimit); err != nil {
		return rq, err
	}
	if v := q.Get("cursor"); v != "" {
		at, id, ok := decodeKeyset(v)
		if !ok {
			return rq, respond.BadRequest("invalid_cursor", "cursor is not one this API handed out").Field("cursor")
		}
		rq.cur = &storage.RunCursor{StartedAt: at, ID: id}
	}
	return rq, nil
}

// globalRunsJSON is GET /api/runs: our cursor page (items, next_cursor) and the original's
// RunsWorkspaceListResponse (scope, filters, page, page_size, total).
type globalRunsJSON struct {
	Items      []globalRunJSON `json:"items"`
	NextCursor *string         `json:"next_cursor"`
	Scope      scopeEchoJSON   `json:"scope"`
	Filters    struct {
		Q      string  `json:"q"`
		Status string  `json:"status"` // comma list, or all
		JobID  *string `json:"job_id,omitempty"`
		Kind   string  `json:"kind"`
		Range  string  `json:"range"`
	} `json:"filters"`
	// Page and PageSize are the numbered page answered; without page/page_size (cursor paging)
	// page is 1 before the first cursor and absent after it, and page_size is the limit.
	Page     *int  `json:"page,omitempty"`
	PageSize int   `json:"page_size"`
	Total    int64 `json:"total"`
}

// scopeEchoJSON is the scope a list was asked for and the one it answers.
type scopeEchoJSON struct {
	Requested string `json:"requested"`
	Effective string `json:"effective"`
}

// runKindOf is what a run did as its progress says, as the original reads it: backup unless
// the progress names restore, verify or cleanup.
func runKindOf(progress *string) string {
	if progress == nil {
		return "backup"
	}
	var p struct {
		Kind string `json:"kind"`
	}
	if json.Unmarshal([]byte(*progress), &p) == nil && runKinds[strings.TrimSpace(p.Kind)] {
		return strings.TrimSpace(p.Kind)
	}
	return "backup"
}

// nodeScope is the original's scope of a node id: hub or agent:<id>.
func nodeScope(agentID *string) string {
	if agentID == nil {
		return "hub"
	}
	return "agent:" + *agentID
}

// listRuns is GET /api/runs: runs of every job and node, newest first, a page at a time.
func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	rq, err := s.readRunFilter(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	var page []storage.RunListItem
	var total int64
	err = s.db.Read(r.Context(), func(q storage.Q) error {
		var err error
		if rq.pg.paged {
			page, err = q.ListRunsAt(r.Context(), rq.f, rq.pg.offset(), rq.limit+1)
		} else {
			page, err = q.ListRuns(r.Context(), rq.f, rq.cur, rq.limit+1)
		}
		if err != nil {
			return err
		}
		total, err = q.CountRuns(r.Context(), rq.f)
		return err
	})
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out := globalRunsJSON{Scope: scopeEchoJSON{Requested: rq.scope, Effective: rq.scope}, PageSize: rq.limit, Total: total}
	if len(page) > rq.limit {
		page = page[:rq.limit]
		last := page[len(page)-1]
		c := encodeKeyset(last.StartedAt, last.ID)
		out.NextCursor = &c
	}
	switch {
	case rq.pg.paged:
		out.Page = &rq.pg.page
	case rq.cur == nil:
		out.Page = ptrTo(1)
	}
	out.Filters.Q, out.Filters.Status, out.Filters.Kind, out.Filters.Range = rq.f.Query, "all", "all", rq.rangeID
	if len(rq.f.Statuses) > 0 {
		out.Filters.Status = strings.Join(rq.f.Statuses, ",")
	}
	if rq.f.Kind != "" {
		out.Filters.Kind = rq.f.Kind
	}
	if rq.f.JobID != "" {
		out.Filters.JobID = &rq.f.JobID
	}
	out.Items = make([]globalRunJSON, 0, len(page))
	for _, x := range page {
		it := globalRunJSON{
			runListJSON: runListJSON{ID: x.ID, JobID: x.JobID, Status: x.Status, StartedAt: x.StartedAt, EndedAt: x.EndedAt,
				Error: x.Error, CancelRequestedAt: x.CancelRequestedAt, CancelReason: x.CancelReason},
			JobName: x.JobName, NodeID: "hub", NodeName: x.AgentName, Scope: nodeScope(x.AgentID), Kind: runKindOf(x.ProgressJSON),
			FailureTitle: x.Error, ExecutedOffline: x.ExecutedOffline, runDigest: digestSummary(x.SummaryJSON),
		}
		if x.AgentID != nil {
			it.NodeID = *x.AgentID
		}
		out.Items = append(out.Items, it)
	}
	respond.JSON(w, http.StatusOK, out)
}

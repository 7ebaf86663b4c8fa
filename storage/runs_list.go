package storage

import (
	"context"
	"fmt"
	"strings"
)

// RunFilter narrows the Hub-wide runs list. Zero fields do not filter.
type RunFilter struct {
	Statuses []string
	JobID    string
	NodeID   string // "hub" or an agent id
	From     *int64 // started_at >= From
	To       *int64 // started_at < To
	// Kind is what the run did as its progress says (backup, restore, verify, cleanup; a run
	// whose progress names none of them is a backup).
	Kind string
	// Query matches, case-insensitively, part of the run's id, its job's name or its error.
	Query string
}

// runKindExpr is a run's kind as RunFilter.Kind reads it. Progress may come from an agent, so
// JSON that is not valid counts as naming no kind (json_extract would fail the whole query).
const runKindExpr = `CASE WHEN json_valid(r.progress_json) AND json_extract(r.progress_json, '$.kind') IN ('restore', 'verify', 'cleanup')
	THEN json_extract(r.progress_json, '$.kind') ELSE 'backup' END`

// RunCursor is where a runs page ends: the (started_at, id) of its last run.
type RunCursor struct {
	StartedAt int64
	ID        string
}

// RunListItem is a run with its job's name and node.
type RunListItem struct {
	Run
	JobName         string
	AgentID         *string // nil: the Hub runs the job
	ExecutedOffline bool    // an agent uploaded it after running it offline
	AgentName       *string // the agent's name, nil for the Hub or an agent since removed
}

// OfflineRunIDs returns which of ids (at most a few hundred) an agent uploaded after running
// them offline.
func (q Q) OfflineRunIDs(ctx context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := q.ex.QueryContext(ctx, `SELECT id FROM runs WHERE ingested_at IS NOT NULL AND id IN (?`+strings.Repeat(",?", len(ids)-1)+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("offline runs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("offline runs: %w", err)
		}
		out[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("offline runs: %w", err)
	}
	return out, nil
}

// listRunsQuery builds the statement of ListRuns. It is one function so that the query plan
// test pins exactly what ListRuns runs.
func listRunsQuery(f RunFilter, after *RunCursor, limit int) (string, []any) {
	where, args := runsWhere(f)
	if after != nil {
		where = append(where, "(r.started_at, r.id) < (?, ?)")
		args = append(args, after.StartedAt, after.ID)
	}
	q := `SELECT ` + runColumnsR + `, j.name, j.agent_id, r.ingested_at IS NOT NULL, a.name FROM runs r JOIN jobs j ON j.id = r.job_id
		LEFT JOIN agents a ON a.id = j.agent_id`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY r.started_at DESC, r.id DESC LIMIT ?"
	return q, append(args, limit)
}

// runsWhere is the WHERE of f over runs r joined with their jobs j.
func runsWhere(f RunFilter) ([]string, []any) {
	var where []string
	var args []any
	if len(f.Statuses) > 0 {
		where = append(where, "r.status IN (?"+strings.Repeat(",?", len(f.Statuses)-1)+")")
		for _, s := range f.Statuses {
			args = append(args, s)
		}
	}
	if f.JobID != "" {
		where = append(where, "r.job_id = ?")
		args = append(args, f.JobID)
	}
	switch f.NodeID {
	case "":
	case "hub":
		where = append(where, "j.agent_id IS NULL")
	default:
		where = append(where, "j.agent_id = ?")
		args = append(args, f.NodeID)
	}
	if f.From != nil {
		where = append(where, "r.started_at >= ?")
		args = append(args, *f.From)
	}
	if f.To != nil {
		where = append(where, "r.started_at < ?")
		args = append(args, *f.To)
	}
	if f.Kind != "" {
		where = append(where, runKindExpr+" = ?")
		args = append(args, f.Kind)
	}
	if f.Query != "" {
		// instr, not LIKE: the text is the user's, and % or _ in it must match themselves.
		where = append(where, "(instr(lower(r.id), ?) > 0 OR instr(lower(j.name), ?) > 0 OR instr(lower(COALESCE(r.error, '')), ?) > 0)")
		t := strings.ToLower(f.Query)
		args = append(args, t, t, t)
	}
	return where, args
}

// CountRuns counts the runs f selects.
func (q Q) CountRuns(ctx context.Context, f RunFilter) (int64, error) {
	where, args := runsWhere(f)
	query := `SELECT COUNT(*) FROM runs r`
	if f.NodeID != "" || f.Query != "" {
		// Only these read the job; without the join SQLite counts an index of runs alone.
		query += ` JOIN jobs j ON j.id = r.job_id`
	}
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	var n int64
	if err := q.ex.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count runs: %w", err)
	}
	return n, nil
}

// ListRunsAt returns a page of the runs f selects by position (offset), newest first: the
// numbered pages of the original's runs list. ListRuns (a cursor) is the cheaper way through.
func (q Q) ListRunsAt(ctx context.Context, f RunFilter, offset, limit int) ([]RunListItem, error) {
	query, args := listRunsQuery(f, nil, limit)
	return q.scanRunList(ctx, query+" OFFSET ?", append(args, offset)...)
}

// ListRuns returns runs of every job and node, newest first by (started_at, id), after the
// cursor when one is given.
func (q Q) ListRuns(ctx context.Context, f RunFilter, after *RunCursor, limit int) ([]RunListItem, error) {
	query, args := listRunsQuery(f, after, limit)
	return q.scanRunList(ctx, query, args...)
}

func (q Q) scanRunList(ctx context.Context, query string, args ...any) ([]RunListItem, error) {
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var out []RunListItem
	for rows.Next() {
		var it RunListItem
		r := &it.Run
		if err := rows.Scan(&r.ID, &r.JobID, &r.Status, &r.StartedAt, &r.EndedAt, &r.SummaryJSON, &r.Error,
			&r.TargetSnapshotJSON, &r.ProgressJSON, &r.CancelRequestedAt, &r.CancelRequestedByUserID, &r.CancelReason,
			&it.JobName, &it.AgentID, &it.ExecutedOffline, &it.AgentName); err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}

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
}

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
	if after != nil {
		where = append(where, "(r.started_at, r.id) < (?, ?)")
		args = append(args, after.StartedAt, after.ID)
	}
	q := `SELECT ` + runColumnsR + `, j.name, j.agent_id, r.ingested_at IS NOT NULL FROM runs r JOIN jobs j ON j.id = r.job_id`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY r.started_at DESC, r.id DESC LIMIT ?"
	return q, append(args, limit)
}

// ListRuns returns runs of every job and node, newest first by (started_at, id), after the
// cursor when one is given.
func (q Q) ListRuns(ctx context.Context, f RunFilter, after *RunCursor, limit int) ([]RunListItem, error) {
	query, args := listRunsQuery(f, after, limit)
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
			&it.JobName, &it.AgentID, &it.ExecutedOffline); err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}

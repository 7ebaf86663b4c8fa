package storage

import (
	"context"
	"fmt"
)

// Dashboard queries: each answers from an index, so the overview costs the same whatever the
// number of jobs, and counts every run instead of the newest few per job.
const (
	// qRunTotalsBetween totals the runs that ended in [lo, hi): one calendar day of the chart.
	// Bytes are the stored size of the snapshot the run left (transfer bytes, else source bytes);
	// runs without a snapshot add none. Summed as sumBytes does (never SUM: agent-reported sizes
	// must not be able to fail the dashboard).
	qRunTotalsBetween = `SELECT COALESCE(SUM(r.status = 'success'), 0), COALESCE(SUM(r.status = 'failed'), 0),
		CAST(TOTAL(MAX(0, COALESCE(a.transfer_bytes, a.source_bytes))) AS INTEGER)
		FROM runs r LEFT JOIN run_artifacts a ON a.run_id = r.id
		WHERE r.ended_at >= ? AND r.ended_at < ?`
	// qRunsByStatusSince is the newest runs in one status started at or after a time, with their
	// job's name ("" when the job is gone).
	qRunsByStatusSince = `SELECT r.id, r.job_id, COALESCE(j.name, ''), r.status, r.started_at, r.ended_at, r.error,
		j.agent_id, r.ingested_at IS NOT NULL
		FROM runs r LEFT JOIN jobs j ON j.id = r.job_id
		WHERE r.status = ? AND r.started_at >= ? ORDER BY r.started_at DESC, r.id DESC LIMIT ?`
	qCountRunsByStatusSince = `SELECT COUNT(*) FROM runs WHERE status = ? AND started_at >= ?`
	// Snapshots in a status across all jobs. The only index on status leads with job_id, so the
	// query walks the jobs (few) and seeks each job's rows; every snapshot has a job (the foreign
	// key cascades), so none is missed.
	qSnapshotsInStatus = `SELECT a.run_id, a.job_id, j.name, a.node_id, a.target_type, a.started_at, a.ended_at,
		a.last_error_kind, a.last_error
		FROM run_artifacts a JOIN jobs j ON j.id = a.job_id
		WHERE a.job_id IN (SELECT id FROM jobs) AND a.status = ?
		ORDER BY a.ended_at DESC, a.run_id DESC LIMIT ?`
	qCountSnapshotsInStatus = `SELECT COUNT(*) FROM run_artifacts WHERE job_id IN (SELECT id FROM jobs) AND status = ?`
	qCountJobs              = `SELECT COUNT(*) FROM jobs`
	qCountArchivedJobs      = `SELECT COUNT(*) FROM jobs WHERE archived_at IS NOT NULL`
)

// RunTotals are the finished runs of one time range.
type RunTotals struct {
	Success int64
	Failed  int64
	Bytes   int64 // stored size of the snapshots those runs left
}

// RunTotalsBetween totals each range [bounds[i], bounds[i+1]) of run end times, so len(bounds)-1
// ranges. Callers pass calendar-day boundaries in the Hub's time zone; run it inside db.Read so
// that all ranges see one snapshot.
func (q Q) RunTotalsBetween(ctx context.Context, bounds []int64) ([]RunTotals, error) {
	if len(bounds) < 2 {
		return nil, nil
	}
	out := make([]RunTotals, len(bounds)-1)
	for i := range out {
		row := q.ex.QueryRowContext(ctx, qRunTotalsBetween, bounds[i], bounds[i+1])
		if err := row.Scan(&out[i].Success, &out[i].Failed, &out[i].Bytes); err != nil {
			return nil, fmt.Errorf("total runs ended in [%d, %d): %w", bounds[i], bounds[i+1], err)
		}
	}
	return out, nil
}

// RunSummary is a run as lists show it, with its job's name.
type RunSummary struct {
	ID        string
	JobID     string
	JobName   string
	Status    string
	StartedAt int64
	EndedAt   *int64
	Error     *string
	AgentID   *string // nil: the Hub ran it (or the job is gone)
	// ExecutedOffline: an agent ran it offline and uploaded it afterwards.
	ExecutedOffline bool
}

// RunsByStatusSince returns up to limit runs in status started at or after since, newest first.
func (q Q) RunsByStatusSince(ctx context.Context, status string, since int64, limit int) ([]RunSummary, error) {
	rows, err := q.ex.QueryContext(ctx, qRunsByStatusSince, status, since, limit)
	if err != nil {
		return nil, fmt.Errorf("list %s runs since %d: %w", status, since, err)
	}
	defer rows.Close()
	var out []RunSummary
	for rows.Next() {
		var r RunSummary
		if err := rows.Scan(&r.ID, &r.JobID, &r.JobName, &r.Status, &r.StartedAt, &r.EndedAt, &r.Error,
			&r.AgentID, &r.ExecutedOffline); err != nil {
			return nil, fmt.Errorf("list %s runs since %d: %w", status, since, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s runs since %d: %w", status, since, err)
	}
	return out, nil
}

// CountRunsByStatusSince counts the runs in status started at or after since.
func (q Q) CountRunsByStatusSince(ctx context.Context, status string, since int64) (int64, error) {
	var n int64
	if err := q.ex.QueryRowContext(ctx, qCountRunsByStatusSince, status, since).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s runs since %d: %w", status, since, err)
	}
	return n, nil
}

// SnapshotSummary is a snapshot as the dashboard lists it.
type SnapshotSummary struct {
	RunID         string
	JobID         string
	JobName       string
	NodeID        string
	TargetType    string
	StartedAt     int64
	EndedAt       int64
	LastErrorKind *string
	LastError     *string
}

// SnapshotsInStatus returns up to limit snapshots of any job in status, newest first.
func (q Q) SnapshotsInStatus(ctx context.Context, status string, limit int) ([]SnapshotSummary, error) {
	rows, err := q.ex.QueryContext(ctx, qSnapshotsInStatus, status, limit)
	if err != nil {
		return nil, fmt.Errorf("list %s snapshots: %w", status, err)
	}
	defer rows.Close()
	var out []SnapshotSummary
	for rows.Next() {
		var s SnapshotSummary
		if err := rows.Scan(&s.RunID, &s.JobID, &s.JobName, &s.NodeID, &s.TargetType, &s.StartedAt, &s.EndedAt,
			&s.LastErrorKind, &s.LastError); err != nil {
			return nil, fmt.Errorf("list %s snapshots: %w", status, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s snapshots: %w", status, err)
	}
	return out, nil
}

// CountSnapshotsInStatus counts the snapshots of any job in status.
func (q Q) CountSnapshotsInStatus(ctx context.Context, status string) (int64, error) {
	var n int64
	if err := q.ex.QueryRowContext(ctx, qCountSnapshotsInStatus, status).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s snapshots: %w", status, err)
	}
	return n, nil
}

// CountJobs counts all jobs, archived ones included.
func (q Q) CountJobs(ctx context.Context) (int64, error) {
	var n int64
	if err := q.ex.QueryRowContext(ctx, qCountJobs).Scan(&n); err != nil {
		return 0, fmt.Errorf("count jobs: %w", err)
	}
	return n, nil
}

// CountArchivedJobs counts the archived jobs. It reads every job row: there are few.
func (q Q) CountArchivedJobs(ctx context.Context) (int64, error) {
	var n int64
	if err := q.ex.QueryRowContext(ctx, qCountArchivedJobs).Scan(&n); err != nil {
		return 0, fmt.Errorf("count archived jobs: %w", err)
	}
	return n, nil
}

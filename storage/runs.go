package storage

import (
	"context"
	"fmt"
)

// Run statuses.
const (
	RunQueued   = "queued"
	RunRunning  = "running"
	RunSuccess  = "success"
	RunFailed   = "failed"
	RunRejected = "rejected"
	RunCanceled = "canceled"
)

// Run is a row of runs. The *JSON fields hold JSON documents as text.
type Run struct {
	ID                      string
	JobID                   string
	Status                  string
	StartedAt               int64
	EndedAt                 *int64
	SummaryJSON             *string
	Error                   *string
	TargetSnapshotJSON      *string
	ProgressJSON            *string
	CancelRequestedAt       *int64
	CancelRequestedByUserID *int64
	CancelReason            *string
}

const runColumns = `id, job_id, status, started_at, ended_at, summary_json, error, target_snapshot_json,
	progress_json, cancel_requested_at, cancel_requested_by_user_id, cancel_reason`

const (
	qListRunsByJob   = `SELECT ` + runColumns + ` FROM runs WHERE job_id = ? ORDER BY started_at DESC LIMIT ?`
	qListRunsByState = `SELECT ` + runColumns + ` FROM runs WHERE status = ? ORDER BY started_at LIMIT ?`
	qRunsEndedBefore = `SELECT id FROM runs WHERE ended_at < ? LIMIT ?`
)

func scanRun(sc interface{ Scan(...any) error }) (Run, error) {
	var r Run
	err := sc.Scan(&r.ID, &r.JobID, &r.Status, &r.StartedAt, &r.EndedAt, &r.SummaryJSON, &r.Error,
		&r.TargetSnapshotJSON, &r.ProgressJSON, &r.CancelRequestedAt, &r.CancelRequestedByUserID, &r.CancelReason)
	return r, err
}

// InsertRun stores a new run.
func (q Q) InsertRun(ctx context.Context, r Run) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO runs(`+runColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		r.ID, r.JobID, r.Status, r.StartedAt, r.EndedAt, r.SummaryJSON, r.Error, r.TargetSnapshotJSON,
		r.ProgressJSON, r.CancelRequestedAt, r.CancelRequestedByUserID, r.CancelReason)
	if err != nil {
		return fmt.Errorf("insert run %s: %w", r.ID, err)
	}
	return nil
}

// GetRun returns a run or ErrNotFound.
func (q Q) GetRun(ctx context.Context, id string) (Run, error) {
	r, err := scanRun(q.ex.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ?`, id))
	if err != nil {
		return Run{}, fmt.Errorf("get run %s: %w", id, notFound(err))
	}
	return r, nil
}

// ListRunsByJob returns the newest runs of a job, newest first.
func (q Q) ListRunsByJob(ctx context.Context, jobID string, limit int) ([]Run, error) {
	return q.listRuns(ctx, "list runs of job "+jobID, qListRunsByJob, jobID, limit)
}

// ListRunsByStatus returns runs in a status, oldest first.
func (q Q) ListRunsByStatus(ctx context.Context, status string, limit int) ([]Run, error) {
	return q.listRuns(ctx, "list "+status+" runs", qListRunsByState, status, limit)
}

func (q Q) listRuns(ctx context.Context, what, query string, args ...any) ([]Run, error) {
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

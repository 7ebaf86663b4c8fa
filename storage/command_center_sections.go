package storage

import (
	"context"
	"fmt"
)

// Queries behind the original's sections of the command center (attention, critical activity,
// watchlist, recovery readiness) and the integrations' per-credential usage. The range queries
// start from an index on the time they filter on.
const (
	// qRunsInRange: runs that started or ended at or after a time (runs_started_at_id and
	// runs_ended_at, joined by OR), newest activity first.
	qRunsInRange = `SELECT r.id, r.job_id, j.name, j.agent_id, a.name, r.status, r.started_at, r.ended_at, r.error
	FROM runs r JOIN jobs j ON j.id = r.job_id LEFT JOIN agents a ON a.id = j.agent_id
	WHERE r.started_at >= ? OR r.ended_at >= ?
	ORDER BY COALESCE(r.ended_at, r.started_at) DESC, r.id DESC LIMIT ?`

	// qProblemRunsInRange: the failed and rejected runs among them (runs_status_started_at).
	qProblemRunsInRange = `SELECT r.id, r.job_id, j.name, j.agent_id, a.name, r.status, r.started_at, r.ended_at, r.error
	FROM runs r JOIN jobs j ON j.id = r.job_id LEFT JOIN agents a ON a.id = j.agent_id
	WHERE r.status IN ('failed', 'rejected') AND r.started_at >= ?
	ORDER BY COALESCE(r.ended_at, r.started_at) DESC, r.id DESC LIMIT ?`

	// qRunOperationsInRange: restores and verifies of a run started at or after a time
	// (operations_status), newest activity first. The unary + keeps SQLite off
	// operations_subject, which it otherwise picks for subject_kind alone: every run's
	// operations ever, whatever the range.
	qRunOperationsInRange = `SELECT o.id, o.kind, o.status, o.started_at, o.ended_at, o.error,
	       r.id, r.job_id, j.name, j.agent_id, a.name
	FROM operations o JOIN runs r ON +o.subject_kind = 'run' AND r.id = o.subject_id
	JOIN jobs j ON j.id = r.job_id LEFT JOIN agents a ON a.id = j.agent_id
	WHERE o.status IN ('running', 'success', 'failed', 'canceled') AND o.started_at >= ?
	  AND o.kind IN ('restore', 'verify')
	ORDER BY COALESCE(o.ended_at, o.started_at) DESC, o.id DESC LIMIT ?`

	// qPendingNotificationsInRange: notifications created at or after a time still queued or
	// being sent (notifications_status_channel_created_at_id).
	qPendingNotificationsInRange = `SELECT n.id, n.run_id, r.job_id, j.name, j.agent_id, n.channel, n.secret_name,
	       n.attempts, n.updated_at, n.last_error
	FROM notifications n JOIN runs r ON r.id = n.run_id JOIN jobs j ON j.id = r.job_id
	WHERE n.status IN ('queued', 'sending') AND n.created_at >= ?
	ORDER BY n.created_at DESC, n.id DESC LIMIT ?`

	// qJobRecoverySignals: every live job with its newest successful run and its newest
	// successful verify operation (runs_job_id_started_at, operations_subject). The unary + on
	// status and kind keeps SQLite off runs_status_started_at and operations_status, which it
	// otherwise picks: those walk every job's successful runs (or operations) once per job, so
	// the page grew with jobs × history (100 jobs of 500 runs: 7 s, 50 ms this way). CROSS JOIN
	// fixes the order (the job's runs, then their operations) for the same reason.
	qJobRecoverySignals = `SELECT j.id, j.name, j.agent_id,
	       b.id, b.ended_at, v.id, v.subject_id, v.ended_at
	FROM jobs j
	LEFT JOIN runs b ON b.id = (SELECT r.id FROM runs r WHERE r.job_id = j.id AND +r.status = 'success'
	                            AND r.ended_at IS NOT NULL ORDER BY r.ended_at DESC, r.id DESC LIMIT 1)
	LEFT JOIN operations v ON v.id = (SELECT o.id FROM runs r CROSS JOIN operations o
	                            ON o.subject_kind = 'run' AND o.subject_id = r.id
	                            WHERE r.job_id = j.id AND +o.kind = 'verify' AND +o.status = 'success'
	                              AND o.ended_at IS NOT NULL ORDER BY o.ended_at DESC, o.id DESC LIMIT 1)
	WHERE j.archived_at IS NULL
	ORDER BY j.id`

	// qLiveJobLatestRuns: every live job's newest run, as the job list picks it.
	qLiveJobLatestRuns = `SELECT j.id, r.id, r.status, r.started_at, r.ended_at
	FROM jobs j JOIN runs r ON r.id = (` + qLatestRunOfJob + `)
	WHERE j.archived_at IS NULL`
)

// ActivityRun is a run with its job and node, for the command center.
type ActivityRun struct {
	RunID, JobID, JobName string
	AgentID, AgentName    *string
	Status                string
	StartedAt             int64
	EndedAt               *int64
	Error                 *string
}

// RunsInRange returns up to limit runs that started or ended at or after from, newest activity
// first.
func (q Q) RunsInRange(ctx context.Context, from int64, limit int) ([]ActivityRun, error) {
	return q.activityRuns(ctx, "list runs in range", qRunsInRange, from, from, limit)
}

// ProblemRunsInRange returns up to limit failed or rejected runs started at or after from,
// newest activity first.
func (q Q) ProblemRunsInRange(ctx context.Context, from int64, limit int) ([]ActivityRun, error) {
	return q.activityRuns(ctx, "list failed runs in range", qProblemRunsInRange, from, limit)
}

func (q Q) activityRuns(ctx context.Context, what, query string, args ...any) ([]ActivityRun, error) {
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []ActivityRun
	for rows.Next() {
		var a ActivityRun
		if err := rows.Scan(&a.RunID, &a.JobID, &a.JobName, &a.AgentID, &a.AgentName, &a.Status, &a.StartedAt, &a.EndedAt, &a.Error); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ActivityOperation is a restore or verify of a run, with the run's job and node.
type ActivityOperation struct {
	OpID, Kind, Status    string
	StartedAt             int64
	EndedAt               *int64
	Error                 *string
	RunID, JobID, JobName string
	AgentID, AgentName    *string
}

// RunOperationsInRange returns up to limit restores and verifies started at or after from,
// newest activity first.
func (q Q) RunOperationsInRange(ctx context.Context, from int64, limit int) ([]ActivityOperation, error) {
	rows, err := q.ex.QueryContext(ctx, qRunOperationsInRange, from, limit)
	if err != nil {
		return nil, fmt.Errorf("list operations in range: %w", err)
	}
	defer rows.Close()
	var out []ActivityOperation
	for rows.Next() {
		var o ActivityOperation
		if err := rows.Scan(&o.OpID, &o.Kind, &o.Status, &o.StartedAt, &o.EndedAt, &o.Error,
			&o.RunID, &o.JobID, &o.JobName, &o.AgentID, &o.AgentName); err != nil {
			return nil, fmt.Errorf("list operations in range: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// PendingNotificationsInRange returns up to limit notifications created at or after from that
// are still queued or being sent, newest first.
func (q Q) PendingNotificationsInRange(ctx context.Context, from int64, limit int) ([]FailedNotification, error) {
	rows, err := q.ex.QueryContext(ctx, qPendingNotificationsInRange, from, limit)
	if err != nil {
		return nil, fmt.Errorf("list pending notifications: %w", err)
	}
	defer rows.Close()
	var out []FailedNotification
	for rows.Next() {
		var n FailedNotification
		if err := rows.Scan(&n.ID, &n.RunID, &n.JobID, &n.JobName, &n.AgentID, &n.Channel, &n.Destination, &n.Attempts, &n.UpdatedAt, &n.LastError); err != nil {
			return nil, fmt.Errorf("list pending notifications: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// JobRecoverySignal is a live job's newest successful backup and newest successful verify.
type JobRecoverySignal struct {
	JobID, JobName string
	AgentID        *string
	BackupRunID    *string
	BackupAt       *int64
	VerifyOpID     *string
	VerifyRunID    *string
	VerifyAt       *int64
}

// JobRecoverySignals returns every live job's recovery signals.
func (q Q) JobRecoverySignals(ctx context.Context) ([]JobRecoverySignal, error) {
	rows, err := q.ex.QueryContext(ctx, qJobRecoverySignals)
	if err != nil {
		return nil, fmt.Errorf("list job recovery signals: %w", err)
	}
	defer rows.Close()
	var out []JobRecoverySignal
	for rows.Next() {
		var s JobRecoverySignal
		if err := rows.Scan(&s.JobID, &s.JobName, &s.AgentID, &s.BackupRunID, &s.BackupAt, &s.VerifyOpID, &s.VerifyRunID, &s.VerifyAt); err != nil {
			return nil, fmt.Errorf("list job recovery signals: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// LatestRun is a job's newest run.
type LatestRun struct {
	RunID, Status string
	StartedAt     int64
	EndedAt       *int64
}

// LiveJobLatestRuns returns the newest run of every live job that has one, by job id.
func (q Q) LiveJobLatestRuns(ctx context.Context) (map[string]LatestRun, error) {
	rows, err := q.ex.QueryContext(ctx, qLiveJobLatestRuns)
	if err != nil {
		return nil, fmt.Errorf("list latest runs of jobs: %w", err)
	}
	defer rows.Close()
	out := map[string]LatestRun{}
	for rows.Next() {
		var id string
		var l LatestRun
		if err := rows.Scan(&id, &l.RunID, &l.Status, &l.StartedAt, &l.EndedAt); err != nil {
			return nil, fmt.Errorf("list latest runs of jobs: %w", err)
		}
		out[id] = l
	}
	return out, rows.Err()
}

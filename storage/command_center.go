package storage

import (
	"context"
	"fmt"
)

// Queries behind the command center (GET /api/command-center): each reads what needs attention
// through an index, so the page stays cheap however long the Hub has run.
const (
	// A job whose newest run failed: start from the failed runs in the window (status,
	// started_at index) and keep those no newer run of the same job follows (job_id,
	// started_at index). Archived jobs no longer need attention.
	qLatestFailedRuns = `SELECT r.id, r.job_id, j.name, j.agent_id, r.started_at, r.ended_at, r.error
	FROM runs r JOIN jobs j ON j.id = r.job_id
	WHERE r.status = 'failed' AND r.started_at >= ? AND j.archived_at IS NULL
	  AND NOT EXISTS (SELECT 1 FROM runs n WHERE n.job_id = r.job_id
	                  AND (n.started_at > r.started_at OR (n.started_at = r.started_at AND n.rowid > r.rowid)))
	ORDER BY r.started_at DESC, r.id DESC LIMIT ?`

	qRecentFailedNotifications = `SELECT n.id, n.run_id, r.job_id, j.name, j.agent_id, n.channel, n.secret_name, n.attempts,
	       n.updated_at, n.last_error
	FROM notifications n JOIN runs r ON r.id = n.run_id JOIN jobs j ON j.id = r.job_id
	WHERE n.status = 'failed' AND n.created_at >= ?
	ORDER BY n.created_at DESC, n.id DESC LIMIT ?`

	qFailedVerifications = `SELECT v.job_id, j.name, j.agent_id, v.last_verify_op_id, v.last_verified_at
	FROM job_verification v JOIN jobs j ON j.id = v.job_id
	WHERE v.last_verify_status = 'failed' AND j.archived_at IS NULL
	ORDER BY v.last_verified_at DESC LIMIT ?`

	// Incomplete-run cleanup tasks still owed: failed and retrying, or stopped (blocked,
	// abandoned) until someone acts, or queued or running since before a cutoff.
	qCleanupBacklog = `SELECT status, COUNT(*), MIN(created_at) FROM incomplete_cleanup_tasks
	WHERE status IN ('retrying', 'blocked', 'abandoned')
	   OR (status IN ('queued', 'running') AND created_at < ?)
	GROUP BY status ORDER BY status`

	qSecretsOfKinds = `SELECT node_id, kind, name, updated_at FROM secrets WHERE kind IN (SELECT value FROM json_each(?))
	ORDER BY node_id, kind, name`

	qLiveJobTargets = `SELECT id, name, agent_id, spec_json FROM jobs WHERE archived_at IS NULL ORDER BY name, id`
)

// FailedRun is the failed newest run of a job.
type FailedRun struct {
	RunID, JobID, JobName string
	AgentID               *string
	StartedAt             int64
	EndedAt               *int64
	Error                 *string
}

// LatestFailedRuns returns the jobs (not archived) whose newest run failed and started at or
// after since, newest first.
func (q Q) LatestFailedRuns(ctx context.Context, since int64, limit int) ([]FailedRun, error) {
	rows, err := q.ex.QueryContext(ctx, qLatestFailedRuns, since, limit)
	if err != nil {
		return nil, fmt.Errorf("list latest failed runs: %w", err)
	}
	defer rows.Close()
	var out []FailedRun
	for rows.Next() {
		var f FailedRun
		if err := rows.Scan(&f.RunID, &f.JobID, &f.JobName, &f.AgentID, &f.StartedAt, &f.EndedAt, &f.Error); err != nil {
			return nil, fmt.Errorf("list latest failed runs: %w", err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// FailedNotification is a notification that gave up.
type FailedNotification struct {
	ID, RunID, JobID, JobName, Channel, Destination string
	AgentID                                         *string // the job's agent; nil for the Hub
	Attempts                                        int
	UpdatedAt                                       int64
	LastError                                       *string
}

// RecentFailedNotifications returns notifications created at or after since that failed for
// good, newest first.
func (q Q) RecentFailedNotifications(ctx context.Context, since int64, limit int) ([]FailedNotification, error) {
	rows, err := q.ex.QueryContext(ctx, qRecentFailedNotifications, since, limit)
	if err != nil {
		return nil, fmt.Errorf("list failed notifications: %w", err)
	}
	defer rows.Close()
	var out []FailedNotification
	for rows.Next() {
		var n FailedNotification
		if err := rows.Scan(&n.ID, &n.RunID, &n.JobID, &n.JobName, &n.AgentID, &n.Channel, &n.Destination, &n.Attempts, &n.UpdatedAt, &n.LastError); err != nil {
			return nil, fmt.Errorf("list failed notifications: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// FailedVerification is a job whose latest verification of its snapshot failed.
type FailedVerification struct {
	JobID, JobName string
	AgentID        *string
	OpID           *string
	VerifiedAt     *int64
}

// FailedVerifications returns the live jobs whose latest verification failed.
func (q Q) FailedVerifications(ctx context.Context, limit int) ([]FailedVerification, error) {
	rows, err := q.ex.QueryContext(ctx, qFailedVerifications, limit)
	if err != nil {
		return nil, fmt.Errorf("list failed verifications: %w", err)
	}
	defer rows.Close()
	var out []FailedVerification
	for rows.Next() {
		var v FailedVerification
		if err := rows.Scan(&v.JobID, &v.JobName, &v.AgentID, &v.OpID, &v.VerifiedAt); err != nil {
			return nil, fmt.Errorf("list failed verifications: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// TaskBacklog counts a queue's open tasks of one status.
type TaskBacklog struct {
	Status          string
	Count           int64
	OldestCreatedAt int64
}

// CleanupBacklog counts, by status, the incomplete-run cleanup tasks that failed (retrying,
// blocked, abandoned) and those queued or running since before pendingBefore.
func (q Q) CleanupBacklog(ctx context.Context, pendingBefore int64) ([]TaskBacklog, error) {
	rows, err := q.ex.QueryContext(ctx, qCleanupBacklog, pendingBefore)
	if err != nil {
		return nil, fmt.Errorf("count cleanup backlog: %w", err)
	}
	defer rows.Close()
	var out []TaskBacklog
	for rows.Next() {
		var b TaskBacklog
		if err := rows.Scan(&b.Status, &b.Count, &b.OldestCreatedAt); err != nil {
			return nil, fmt.Errorf("count cleanup backlog: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// NodeSecret names one stored secret (never its value).
type NodeSecret struct {
	NodeID, Kind, Name string
	UpdatedAt          int64
}

// ListSecretsOfKinds lists the secrets of the given kinds on every node, without their values.
// kindsJSON is a JSON array of kinds.
func (q Q) ListSecretsOfKinds(ctx context.Context, kindsJSON string) ([]NodeSecret, error) {
	rows, err := q.ex.QueryContext(ctx, qSecretsOfKinds, kindsJSON)
	if err != nil {
		return nil, fmt.Errorf("list secrets of kinds: %w", err)
	}
	defer rows.Close()
	var out []NodeSecret
	for rows.Next() {
		var s NodeSecret
		if err := rows.Scan(&s.NodeID, &s.Kind, &s.Name, &s.UpdatedAt); err != nil {
			return nil, fmt.Errorf("list secrets of kinds: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// JobTarget is a live job with its node and spec.
type JobTarget struct {
	ID, Name string
	AgentID  *string
	SpecJSON string
}

// ListLiveJobTargets returns every job that is not archived, by name.
func (q Q) ListLiveJobTargets(ctx context.Context) ([]JobTarget, error) {
	rows, err := q.ex.QueryContext(ctx, qLiveJobTargets)
	if err != nil {
		return nil, fmt.Errorf("list live jobs: %w", err)
	}
	defer rows.Close()
	var out []JobTarget
	for rows.Next() {
		var j JobTarget
		if err := rows.Scan(&j.ID, &j.Name, &j.AgentID, &j.SpecJSON); err != nil {
			return nil, fmt.Errorf("list live jobs: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

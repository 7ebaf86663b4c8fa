package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// SettingVerification holds the Hub's drill settings ({"stale_after_days": N}).
const SettingVerification = "verification"

// JobVerification is a row of job_verification: a job's drill schedule and drill state.
type JobVerification struct {
	JobID            string
	ConfigJSON       *string // nil: no scheduled drills
	BaselineAt       int64
	LastScheduledAt  *int64
	PendingAt        *int64
	PendingSource    *string
	RunningOpID      *string
	LastVerifiedAt   *int64
	LastVerifyStatus *string
	LastVerifyOpID   *string
	LastProvenAt     *int64
	UpdatedAt        int64
}

const verificationColumns = `job_id, config_json, baseline_at, last_scheduled_at, pending_at, pending_source,
	running_op_id, last_verified_at, last_verify_status, last_verify_op_id, last_proven_at, updated_at`

// scanDest lists where verificationColumns scan to, in their order.
func (v *JobVerification) scanDest() []any {
	return []any{&v.JobID, &v.ConfigJSON, &v.BaselineAt, &v.LastScheduledAt, &v.PendingAt, &v.PendingSource,
		&v.RunningOpID, &v.LastVerifiedAt, &v.LastVerifyStatus, &v.LastVerifyOpID, &v.LastProvenAt, &v.UpdatedAt}
}

func scanVerification(sc interface{ Scan(...any) error }) (JobVerification, error) {
	var v JobVerification
	err := sc.Scan(v.scanDest()...)
	return v, err
}

// GetJobVerification returns a job's drill row, or ErrNotFound when it has none.
func (q Q) GetJobVerification(ctx context.Context, jobID string) (JobVerification, error) {
	v, err := scanVerification(q.ex.QueryRowContext(ctx, `SELECT `+verificationColumns+` FROM job_verification WHERE job_id = ?`, jobID))
	if err != nil {
		return v, fmt.Errorf("get verification of job %s: %w", jobID, notFound(err))
	}
	return v, nil
}

// SetJobVerificationConfig stores a job's drill schedule (nil: none). The baseline moves to now
// only when the configuration changes, so an unrelated job edit cannot make a due drill look past.
func (q Q) SetJobVerificationConfig(ctx context.Context, jobID string, configJSON *string, now int64) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO job_verification(job_id, config_json, baseline_at, updated_at)
		VALUES (?, ?, ?, ?)
		ON CONFLICT(job_id) DO UPDATE SET
			baseline_at = CASE WHEN config_json IS excluded.config_json THEN baseline_at ELSE excluded.baseline_at END,
			updated_at = CASE WHEN config_json IS excluded.config_json THEN updated_at ELSE excluded.updated_at END,
			config_json = excluded.config_json`, jobID, configJSON, now, now)
	if err != nil {
		return fmt.Errorf("store verification schedule of job %s: %w", jobID, err)
	}
	return nil
}

// ScheduledVerification is a live job with a drill schedule, as the drill scheduler loads it.
type ScheduledVerification struct {
	JobVerification
}

// ListScheduledVerifications returns every job that is not archived and has a drill schedule.
func (q Q) ListScheduledVerifications(ctx context.Context) ([]ScheduledVerification, error) {
	return q.listScheduledVerifications(ctx, "")
}

// GetScheduledVerification is ListScheduledVerifications for one job (ErrNotFound: none).
func (q Q) GetScheduledVerification(ctx context.Context, jobID string) (ScheduledVerification, error) {
	out, err := q.listScheduledVerifications(ctx, jobID)
	if err != nil {
		return ScheduledVerification{}, err
	}
	if len(out) == 0 {
		return ScheduledVerification{}, fmt.Errorf("get drill schedule of job %s: %w", jobID, ErrNotFound)
	}
	return out[0], nil
}

func (q Q) listScheduledVerifications(ctx context.Context, jobID string) ([]ScheduledVerification, error) {
	query := `SELECT ` + prefixColumns("v.", verificationColumns) + `
		FROM job_verification v JOIN jobs j ON j.id = v.job_id
		WHERE v.config_json IS NOT NULL AND j.archived_at IS NULL`
	var args []any
	if jobID != "" {
		query += ` AND v.job_id = ?`
		args = append(args, jobID)
	}
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list drill schedules: %w", err)
	}
	defer rows.Close()
	var out []ScheduledVerification
	for rows.Next() {
		v, err := scanVerification(rows)
		if err != nil {
			return nil, fmt.Errorf("list drill schedules: %w", err)
		}
		out = append(out, ScheduledVerification{JobVerification: v})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list drill schedules: %w", err)
	}
	return out, nil
}

// MarkVerificationDue records that the drill scheduler acted on the trigger at `at`, provided the
// drill schedule is unchanged since it was read (same baseline and last_scheduled_at); pending
// marks the drill as waiting to start (a skipped trigger passes pending false). It reports false
// when the row changed meanwhile. A drill already pending or running absorbs the trigger: drills
// of one job never pile up.
func (q Q) MarkVerificationDue(ctx context.Context, jobID string, baseline int64, prev *int64, at int64, pending bool, source string, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE job_verification SET last_scheduled_at = ?,
			pending_at = CASE WHEN ? AND pending_at IS NULL AND running_op_id IS NULL THEN ? ELSE pending_at END,
			pending_source = CASE WHEN ? AND pending_at IS NULL AND running_op_id IS NULL THEN ? ELSE pending_source END
		WHERE job_id = ? AND config_json IS NOT NULL AND baseline_at = ? AND last_scheduled_at IS ?`,
		at, pending, now, pending, source, jobID, baseline, prev)
	if err != nil {
		return false, fmt.Errorf("mark drill of job %s due: %w", jobID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("mark drill of job %s due: %w", jobID, err)
	}
	return n == 1, nil
}

// RequestVerification marks a drill of the job pending now (a manual "run drill"), creating the
// row if needed; a drill already pending keeps its place, and one already running absorbs it.
func (q Q) RequestVerification(ctx context.Context, jobID, source string, now int64) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO job_verification(job_id, baseline_at, pending_at, pending_source, updated_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(job_id) DO UPDATE SET
			pending_source = CASE WHEN pending_at IS NULL AND running_op_id IS NULL THEN excluded.pending_source ELSE pending_source END,
			pending_at = CASE WHEN running_op_id IS NULL THEN COALESCE(pending_at, excluded.pending_at) ELSE pending_at END`,
		jobID, now, now, source, now)
	if err != nil {
		return fmt.Errorf("request drill of job %s: %w", jobID, err)
	}
	return nil
}

// PendingVerification is a drill waiting to start, with its job.
type PendingVerification struct {
	JobVerification
	Job Job
}

// ListPendingVerifications returns the drills waiting to start whose job is live, oldest first.
func (q Q) ListPendingVerifications(ctx context.Context, limit int) ([]PendingVerification, error) {
	rows, err := q.ex.QueryContext(ctx, `SELECT `+prefixColumns("v.", verificationColumns)+`, `+jobColumnsJ+`
		FROM job_verification v JOIN jobs j ON j.id = v.job_id
		WHERE v.pending_at IS NOT NULL AND v.running_op_id IS NULL AND j.archived_at IS NULL
		ORDER BY v.pending_at, v.job_id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list pending drills: %w", err)
	}
	defer rows.Close()
	var out []PendingVerification
	for rows.Next() {
		var p PendingVerification
		if err := scanJobWith(rowPrefix{rows, p.JobVerification.scanDest()}, &p.Job); err != nil {
			return nil, fmt.Errorf("list pending drills: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list pending drills: %w", err)
	}
	return out, nil
}

// StartVerification moves a pending drill to running opID. It reports false when the drill is
// no longer pending (or already running).
func (q Q) StartVerification(ctx context.Context, jobID, opID string) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE job_verification SET running_op_id = ?, pending_at = NULL, pending_source = NULL
		WHERE job_id = ? AND pending_at IS NOT NULL AND running_op_id IS NULL`, opID, jobID)
	if err != nil {
		return false, fmt.Errorf("start drill of job %s: %w", jobID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("start drill of job %s: %w", jobID, err)
	}
	return n == 1, nil
}

// DropPendingVerification clears a pending drill that cannot run (no snapshot yet, say).
func (q Q) DropPendingVerification(ctx context.Context, jobID string) error {
	_, err := q.ex.ExecContext(ctx, `UPDATE job_verification SET pending_at = NULL, pending_source = NULL WHERE job_id = ?`, jobID)
	if err != nil {
		return fmt.Errorf("drop pending drill of job %s: %w", jobID, err)
	}
	return nil
}

// RecordVerification stores the end of a drill (or of a verify of the job's latest snapshot):
// last_verified_* always, last_proven_at on success, and clears running_op_id when it was opID.
func (q Q) RecordVerification(ctx context.Context, jobID, opID, status string, endedAt int64) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO job_verification(job_id, baseline_at, last_verified_at, last_verify_status,
			last_verify_op_id, last_proven_at, updated_at)
		VALUES (?1, ?2, ?2, ?3, ?4, CASE WHEN ?3 = 'success' THEN ?2 END, ?2)
		ON CONFLICT(job_id) DO UPDATE SET
			last_verified_at = excluded.last_verified_at, last_verify_status = excluded.last_verify_status,
			last_verify_op_id = excluded.last_verify_op_id,
			last_proven_at = COALESCE(excluded.last_proven_at, last_proven_at),
			running_op_id = CASE WHEN running_op_id = excluded.last_verify_op_id THEN NULL ELSE running_op_id END`,
		jobID, endedAt, status, opID)
	if err != nil {
		return fmt.Errorf("record drill of job %s: %w", jobID, err)
	}
	return nil
}

// ReleaseVerification clears running_op_id when it is opID, without recording a result (the
// operation could not be started).
func (q Q) ReleaseVerification(ctx context.Context, jobID, opID string) error {
	_, err := q.ex.ExecContext(ctx, `UPDATE job_verification SET running_op_id = NULL WHERE job_id = ? AND running_op_id = ?`, jobID, opID)
	if err != nil {
		return fmt.Errorf("release drill of job %s: %w", jobID, err)
	}
	return nil
}

// ListRunningVerifications returns (job id, operation id) of every drill marked running.
func (q Q) ListRunningVerifications(ctx context.Context) (map[string]string, error) {
	rows, err := q.ex.QueryContext(ctx, `SELECT job_id, running_op_id FROM job_verification WHERE running_op_id IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("list running drills: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var j, o string
		if err := rows.Scan(&j, &o); err != nil {
			return nil, fmt.Errorf("list running drills: %w", err)
		}
		out[j] = o
	}
	return out, rows.Err()
}

// ListJobVerifications returns the drill rows of the given jobs, by job id.
func (q Q) ListJobVerifications(ctx context.Context, jobIDs []string) (map[string]JobVerification, error) {
	out := map[string]JobVerification{}
	for len(jobIDs) > 0 {
		n := min(len(jobIDs), 500)
		chunk := jobIDs[:n]
		jobIDs = jobIDs[n:]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := q.ex.QueryContext(ctx, `SELECT `+verificationColumns+` FROM job_verification WHERE job_id IN (?`+
			strings.Repeat(",?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("list job verifications: %w", err)
		}
		for rows.Next() {
			v, err := scanVerification(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("list job verifications: %w", err)
			}
			out[v.JobID] = v
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("list job verifications: %w", err)
		}
	}
	return out, nil
}

// VerificationHealth counts the live (not archived) jobs by drill state: never proven, proven
// before staleBefore, and whose last drill failed (a job may be in two of these).
type VerificationHealth struct {
	Jobs        int64
	NeverProven int64
	Stale       int64
	LastFailed  int64
}

// CountVerificationHealth answers VerificationHealth for the dashboard.
func (q Q) CountVerificationHealth(ctx context.Context, staleBefore int64) (VerificationHealth, error) {
	var h VerificationHealth
	err := q.ex.QueryRowContext(ctx, `SELECT COUNT(*),
			COALESCE(SUM(v.last_proven_at IS NULL), 0),
			COALESCE(SUM(v.last_proven_at IS NOT NULL AND v.last_proven_at < ?), 0),
			COALESCE(SUM(v.last_verify_status = 'failed'), 0)
		FROM jobs j LEFT JOIN job_verification v ON v.job_id = j.id
		WHERE j.archived_at IS NULL`, staleBefore).Scan(&h.Jobs, &h.NeverProven, &h.Stale, &h.LastFailed)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return h, fmt.Errorf("count drill health: %w", err)
	}
	return h, nil
}

// LatestSnapshotRun returns the id of the job's newest successful run whose snapshot is present,
// or ErrNotFound.
func (q Q) LatestSnapshotRun(ctx context.Context, jobID string) (string, error) {
	var id string
	err := q.ex.QueryRowContext(ctx, `SELECT run_id FROM run_artifacts WHERE job_id = ? AND status = 'present'
		ORDER BY ended_at DESC, run_id DESC LIMIT 1`, jobID).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("latest snapshot of job %s: %w", jobID, notFound(err))
	}
	return id, nil
}

// HasRunningRun reports whether the job has a run in status running.
func (q Q) HasRunningRun(ctx context.Context, jobID string) (bool, error) {
	var n int
	if err := q.ex.QueryRowContext(ctx, `SELECT COUNT(*) FROM runs WHERE job_id = ? AND status = 'running'`, jobID).Scan(&n); err != nil {
		return false, fmt.Errorf("check running run of job %s: %w", jobID, err)
	}
	return n > 0, nil
}

// UnprovenJob is a live job whose snapshots were not proven recently, for the dashboard.
type UnprovenJob struct {
	JobID            string
	JobName          string
	LastProvenAt     *int64
	LastVerifyStatus *string
	LastVerifiedAt   *int64
}

// ListUnprovenJobs returns live jobs never proven, proven before staleBefore, or whose last drill
// failed: failed first, then never proven, then the longest unproven.
func (q Q) ListUnprovenJobs(ctx context.Context, staleBefore int64, limit int) ([]UnprovenJob, error) {
	rows, err := q.ex.QueryContext(ctx, `SELECT j.id, j.name, v.last_proven_at, v.last_verify_status, v.last_verified_at
		FROM jobs j LEFT JOIN job_verification v ON v.job_id = j.id
		WHERE j.archived_at IS NULL AND (v.last_proven_at IS NULL OR v.last_proven_at < ? OR v.last_verify_status = 'failed')
		ORDER BY COALESCE(v.last_verify_status = 'failed', 0) DESC, v.last_proven_at IS NOT NULL, v.last_proven_at, j.name, j.id
		LIMIT ?`, staleBefore, limit)
	if err != nil {
		return nil, fmt.Errorf("list unproven jobs: %w", err)
	}
	defer rows.Close()
	var out []UnprovenJob
	for rows.Next() {
		var u UnprovenJob
		if err := rows.Scan(&u.JobID, &u.JobName, &u.LastProvenAt, &u.LastVerifyStatus, &u.LastVerifiedAt); err != nil {
			return nil, fmt.Errorf("list unproven jobs: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

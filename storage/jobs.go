package storage

import (
	"context"
	"fmt"
)

// Job is a row of jobs. SpecJSON is the job spec exactly as the client sent it.
type Job struct {
	ID               string
	Name             string
	AgentID          *string // nil: the job runs on the Hub
	Schedule         *string // nil: manual only
	ScheduleTimezone string
	OverlapPolicy    string // reject | queue
	MissedRunPolicy  string // run_once | skip
	LastScheduledAt  *int64
	SpecJSON         string
	CreatedAt        int64
	UpdatedAt        int64
	ArchivedAt       *int64
}

const jobColumns = `id, name, agent_id, schedule, schedule_timezone, overlap_policy, missed_run_policy,
	last_scheduled_at, spec_json, created_at, updated_at, archived_at`

// qListScheduledJobs is the scheduler's load: every live job with a cron schedule.
const qListScheduledJobs = `SELECT ` + jobColumns + ` FROM jobs WHERE schedule IS NOT NULL AND archived_at IS NULL`

func scanJob(sc interface{ Scan(...any) error }) (Job, error) {
	var j Job
	err := sc.Scan(&j.ID, &j.Name, &j.AgentID, &j.Schedule, &j.ScheduleTimezone, &j.OverlapPolicy,
		&j.MissedRunPolicy, &j.LastScheduledAt, &j.SpecJSON, &j.CreatedAt, &j.UpdatedAt, &j.ArchivedAt)
	return j, err
}

// InsertJob stores a new job.
func (q Q) InsertJob(ctx context.Context, j Job) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO jobs(`+jobColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		j.ID, j.Name, j.AgentID, j.Schedule, j.ScheduleTimezone, j.OverlapPolicy, j.MissedRunPolicy,
		j.LastScheduledAt, j.SpecJSON, j.CreatedAt, j.UpdatedAt, j.ArchivedAt)
	if err != nil {
		return fmt.Errorf("insert job %s: %w", j.ID, err)
	}
	return nil
}

// GetJob returns a job or ErrNotFound.
func (q Q) GetJob(ctx context.Context, id string) (Job, error) {
	j, err := scanJob(q.ex.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ?`, id))
	if err != nil {
		return Job{}, fmt.Errorf("get job %s: %w", id, notFound(err))
	}
	return j, nil
}

// UpdateJob replaces the editable fields of a job (not created_at, archived_at or
// last_scheduled_at). It returns ErrNotFound when the job does not exist.
func (q Q) UpdateJob(ctx context.Context, j Job) error {
	res, err := q.ex.ExecContext(ctx, `UPDATE jobs SET name = ?, agent_id = ?, schedule = ?, schedule_timezone = ?,
		overlap_policy = ?, missed_run_policy = ?, spec_json = ?, updated_at = ? WHERE id = ?`,
		j.Name, j.AgentID, j.Schedule, j.ScheduleTimezone, j.OverlapPolicy, j.MissedRunPolicy, j.SpecJSON, j.UpdatedAt, j.ID)
	return affectedOne(res, err, "update job "+j.ID)
}

// DeleteJob removes a job; runs, events, notifications and snapshot rows go with it by cascade.
func (q Q) DeleteJob(ctx context.Context, id string) error {
	res, err := q.ex.ExecContext(ctx, `DELETE FROM jobs WHERE id = ?`, id)
	return affectedOne(res, err, "delete job "+id)
}

// ListScheduledJobs returns every job that is not archived and has a cron schedule.
func (q Q) ListScheduledJobs(ctx context.Context) ([]Job, error) {
	rows, err := q.ex.QueryContext(ctx, qListScheduledJobs)
	if err != nil {
		return nil, fmt.Errorf("list scheduled jobs: %w", err)
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list scheduled jobs: %w", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list scheduled jobs: %w", err)
	}
	return out, nil
}

// SetJobLastScheduled records the trigger instant the scheduler acted on.
func (q Q) SetJobLastScheduled(ctx context.Context, id string, at int64) error {
	_, err := q.ex.ExecContext(ctx, `UPDATE jobs SET last_scheduled_at = ? WHERE id = ?`, at, id)
	if err != nil {
		return fmt.Errorf("set last scheduled of job %s: %w", id, err)
	}
	return nil
}

func affectedOne(res interface{ RowsAffected() (int64, error) }, err error, what string) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}

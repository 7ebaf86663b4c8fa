package storage

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
	// ScheduleBaselineAt is when the current schedule took effect (creation, a change of schedule
	// or timezone, unarchiving): triggers before it never count as missed.
	ScheduleBaselineAt int64
	SpecJSON           string
	CreatedAt          int64
	UpdatedAt          int64
	ArchivedAt         *int64
}

const jobColumns = `id, name, agent_id, schedule, schedule_timezone, overlap_policy, missed_run_policy,
	last_scheduled_at, schedule_baseline_at, spec_json, created_at, updated_at, archived_at`

// qListScheduledJobs is the scheduler's load: every live job with a cron schedule.
const qListScheduledJobs = `SELECT ` + jobColumns + ` FROM jobs WHERE schedule IS NOT NULL AND archived_at IS NULL`

func scanJob(sc interface{ Scan(...any) error }) (Job, error) {
	var j Job
	err := scanJobWith(sc, &j)
	return j, err
}

// scanJobWith scans the job columns (jobColumns or jobColumnsJ, in that order) followed by extra
// destinations, so joins reuse the one place that knows the column order.
func scanJobWith(sc interface{ Scan(...any) error }, j *Job, extra ...any) error {
	var baseline *int64
	dest := append([]any{&j.ID, &j.Name, &j.AgentID, &j.Schedule, &j.ScheduleTimezone, &j.OverlapPolicy,
		&j.MissedRunPolicy, &j.LastScheduledAt, &baseline, &j.SpecJSON, &j.CreatedAt, &j.UpdatedAt, &j.ArchivedAt}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return err
	}
	j.ScheduleBaselineAt = j.CreatedAt
	if baseline != nil {
		j.ScheduleBaselineAt = *baseline
	}
	return nil
}

// InsertJob stores a new job.
func (q Q) InsertJob(ctx context.Context, j Job) error {
	if j.ScheduleBaselineAt == 0 {
		j.ScheduleBaselineAt = j.CreatedAt
	}
	_, err := q.ex.ExecContext(ctx, `INSERT INTO jobs(`+jobColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		j.ID, j.Name, j.AgentID, j.Schedule, j.ScheduleTimezone, j.OverlapPolicy, j.MissedRunPolicy,
		j.LastScheduledAt, j.ScheduleBaselineAt, j.SpecJSON, j.CreatedAt, j.UpdatedAt, j.ArchivedAt)
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

// JobNames maps each of ids that names a job to the job's name; unknown ids are left out.
func (q Q) JobNames(ctx context.Context, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	for chunk := range slices.Chunk(ids, 500) { // SQLite's bound-parameter limit
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := q.ex.QueryContext(ctx, `SELECT id, name FROM jobs WHERE id IN (?`+strings.Repeat(",?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("job names: %w", err)
		}
		for rows.Next() {
			var id, name string
			if err := rows.Scan(&id, &name); err != nil {
				rows.Close()
				return nil, fmt.Errorf("job names: %w", err)
			}
			out[id] = name
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("job names: %w", err)
		}
	}
	return out, nil
}

// UpdateJob replaces the editable fields of a job (not created_at, archived_at or
// last_scheduled_at). It returns ErrNotFound when the job does not exist.
func (q Q) UpdateJob(ctx context.Context, j Job) error {
	// SET expressions see the row as it was, so the baseline moves only when the schedule or its
	// timezone actually changes.
	res, err := q.ex.ExecContext(ctx, `UPDATE jobs SET
		schedule_baseline_at = CASE WHEN schedule IS ? AND schedule_timezone = ? THEN schedule_baseline_at ELSE ? END,
		name = ?, agent_id = ?, schedule = ?, schedule_timezone = ?,
		overlap_policy = ?, missed_run_policy = ?, spec_json = ?, updated_at = ? WHERE id = ?`,
		j.Schedule, j.ScheduleTimezone, j.UpdatedAt,
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

// MarkJobScheduled records that the scheduler acted on the trigger at `at`, provided the job is
// still live and unchanged since the scheduler read it (same updated_at and last_scheduled_at).
// It reports false otherwise: the job was edited, archived, deleted or fired meanwhile, and the
// scheduler must look again instead of acting on stale data.
func (q Q) MarkJobScheduled(ctx context.Context, id string, updatedAt int64, prev *int64, at int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE jobs SET last_scheduled_at = ? WHERE id = ? AND archived_at IS NULL
		AND schedule IS NOT NULL AND updated_at = ? AND last_scheduled_at IS ?`, at, id, updatedAt, prev)
	if err != nil {
		return false, fmt.Errorf("mark job %s scheduled: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("mark job %s scheduled: %w", id, err)
	}
	return n == 1, nil
}

// ArchiveJob stamps archived_at (kept when already archived). ErrNotFound when the job is missing.
func (q Q) ArchiveJob(ctx context.Context, id string, now int64) error {
	res, err := q.ex.ExecContext(ctx, `UPDATE jobs SET archived_at = COALESCE(archived_at, ?) WHERE id = ?`, now, id)
	return affectedOne(res, err, "archive job "+id)
}

// UnarchiveJob clears archived_at. updated_at moves to now when the job was archived, so the
// scheduler counts from the unarchive: triggers that fell while archived are not "missed".
func (q Q) UnarchiveJob(ctx context.Context, id string, now int64) error {
	res, err := q.ex.ExecContext(ctx, `UPDATE jobs SET updated_at = CASE WHEN archived_at IS NULL THEN updated_at ELSE ? END,
		schedule_baseline_at = CASE WHEN archived_at IS NULL THEN schedule_baseline_at ELSE ? END,
		archived_at = NULL WHERE id = ?`, now, now, id)
	return affectedOne(res, err, "unarchive job "+id)
}

// AgentRevokedAt returns when the agent was revoked (nil: it is not), or ErrNotFound.
func (q Q) AgentRevokedAt(ctx context.Context, agentID string) (*int64, error) {
	var at *int64
	if err := q.ex.QueryRowContext(ctx, `SELECT revoked_at FROM agents WHERE id = ?`, agentID).Scan(&at); err != nil {
		return nil, fmt.Errorf("look up agent %s: %w", agentID, notFound(err))
	}
	return at, nil
}

// JobFilter selects and orders the job list. Zero values mean: every node, archived hidden, any
// name, any latest status, any schedule mode, newest update first, no paging.
type JobFilter struct {
	HubOnly         bool
	AgentID         string // jobs of this agent only
	IncludeArchived bool
	Query           string // case-insensitive substring of the name
	LatestStatus    string // "" or "all": any; "never": no run yet; else a run status
	ScheduleMode    string // "" or "all"; "manual"; "scheduled"
	Sort            string // updated_desc (default) | updated_asc | name_asc | name_desc
	Limit, Offset   int    // Limit 0: everything
}

// JobListItem is a job and its most recent run, if any.
type JobListItem struct {
	Job
	LatestRunID        *string
	LatestRunStatus    *string
	LatestRunStartedAt *int64
	LatestRunEndedAt   *int64
}

// qLatestRunOfJob picks a job's newest run through runs(job_id, started_at).
const qLatestRunOfJob = `SELECT r.id FROM runs r WHERE r.job_id = j.id ORDER BY r.started_at DESC, r.rowid DESC LIMIT 1`

var jobSorts = map[string]string{
	"":             "b.updated_at DESC, b.id DESC",
	"updated_desc": "b.updated_at DESC, b.id DESC",
	"updated_asc":  "b.updated_at ASC, b.id ASC",
	"name_asc":     "b.name COLLATE NOCASE ASC, b.id ASC",
	"name_desc":    "b.name COLLATE NOCASE DESC, b.id DESC",
}

// ListJobs returns one page of jobs matching f and the number of matching jobs. Run it inside
// Read so that the count and the page agree.
func (q Q) ListJobs(ctx context.Context, f JobFilter) ([]JobListItem, int, error) {
	order, ok := jobSorts[f.Sort]
	if !ok {
		return nil, 0, fmt.Errorf("list jobs: unknown sort %q", f.Sort)
	}
	var where []string
	var args []any
	switch {
	case f.HubOnly:
		where = append(where, "j.agent_id IS NULL")
	case f.AgentID != "":
		where, args = append(where, "j.agent_id = ?"), append(args, f.AgentID)
	}
	if !f.IncludeArchived {
		where = append(where, "j.archived_at IS NULL")
	}
	if f.Query != "" {
		where = append(where, `j.name LIKE ? ESCAPE '\'`)
		args = append(args, "%"+likeEscaper.Replace(f.Query)+"%")
	}
	switch f.ScheduleMode {
	case "", "all":
	case "manual":
		where = append(where, "j.schedule IS NULL")
	case "scheduled":
		where = append(where, "j.schedule IS NOT NULL")
	default:
		return nil, 0, fmt.Errorf("list jobs: unknown schedule mode %q", f.ScheduleMode)
	}
	base := `SELECT ` + jobColumnsJ + `, (` + qLatestRunOfJob + `) AS latest_run_id FROM jobs j`
	if len(where) > 0 {
		base += " WHERE " + strings.Join(where, " AND ")
	}
	query := `WITH b AS (` + base + `) SELECT b.*, lr.status, lr.started_at, lr.ended_at FROM b
		LEFT JOIN runs lr ON lr.id = b.latest_run_id`
	switch f.LatestStatus {
	case "", "all":
	case "never":
		query += " WHERE b.latest_run_id IS NULL"
	default:
		query += " WHERE lr.status = ?"
		args = append(args, f.LatestStatus)
	}
	var total int
	if err := q.ex.QueryRowContext(ctx, `SELECT COUNT(*) FROM (`+query+`)`, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count jobs: %w", err)
	}
	query += " ORDER BY " + order
	if f.Limit > 0 {
		query += " LIMIT ? OFFSET ?"
		args = append(args, f.Limit, f.Offset)
	}
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []JobListItem
	for rows.Next() {
		var it JobListItem
		j := &it.Job
		if err := scanJobWith(rows, j, &it.LatestRunID, &it.LatestRunStatus, &it.LatestRunStartedAt, &it.LatestRunEndedAt); err != nil {
			return nil, 0, fmt.Errorf("list jobs: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("list jobs: %w", err)
	}
	return out, total, nil
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

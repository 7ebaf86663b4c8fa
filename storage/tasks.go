package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Task-queue statuses, shared by the snapshot delete queue and the incomplete-cleanup queue.
const (
	TaskQueued    = "queued"
	TaskRunning   = "running"
	TaskRetrying  = "retrying"
	TaskBlocked   = "blocked"
	TaskAbandoned = "abandoned"
	TaskDone      = "done"
	TaskIgnored   = "ignored"
)

// ErrTaskRunning refuses a manual action on a task a worker holds.
var ErrTaskRunning = errors.New("task is running")

// ErrTaskState refuses a manual action the task's status does not allow.
var ErrTaskState = errors.New("task status does not allow this action")

// TaskQueue names the tables of one queue. Both queues have the same shape: a task per run,
// retried with backoff, with an append-only event log.
type TaskQueue struct {
	name, table, events string
	reasonCol           string // the delete queue records why a delete was requested
}

var (
	DeleteQueue  = TaskQueue{"snapshot delete", "artifact_delete_tasks", "artifact_delete_events", "reason"}
	CleanupQueue = TaskQueue{"incomplete cleanup", "incomplete_cleanup_tasks", "incomplete_cleanup_events", "'' AS reason"}
)

// Task is one row of a queue.
type Task struct {
	RunID              string  `json:"run_id"`
	JobID              string  `json:"job_id"`
	NodeID             string  `json:"node_id"`
	TargetType         string  `json:"target_type"`
	TargetSnapshotJSON string  `json:"-"`
	Reason             string  `json:"reason,omitempty"`
	Status             string  `json:"status"`
	Attempts           int     `json:"attempts"`
	LastAttemptAt      *int64  `json:"last_attempt_at"`
	NextAttemptAt      int64   `json:"next_attempt_at"`
	LastErrorKind      *string `json:"last_error_kind"`
	LastError          *string `json:"last_error"`
	IgnoredAt          *int64  `json:"ignored_at"`
	IgnoredByUserID    *int64  `json:"ignored_by_user_id"`
	IgnoreReason       *string `json:"ignore_reason"`
	CreatedAt          int64   `json:"created_at"`
	UpdatedAt          int64   `json:"updated_at"`
}

func (tq TaskQueue) columns() string {
	return `run_id, job_id, node_id, target_type, target_snapshot_json, ` + tq.reasonCol + `, status, attempts,
		last_attempt_at, next_attempt_at, last_error_kind, last_error, ignored_at, ignored_by_user_id,
		ignore_reason, created_at, updated_at`
}

func scanTask(sc interface{ Scan(...any) error }) (Task, error) {
	var t Task
	err := sc.Scan(&t.RunID, &t.JobID, &t.NodeID, &t.TargetType, &t.TargetSnapshotJSON, &t.Reason, &t.Status,
		&t.Attempts, &t.LastAttemptAt, &t.NextAttemptAt, &t.LastErrorKind, &t.LastError, &t.IgnoredAt,
		&t.IgnoredByUserID, &t.IgnoreReason, &t.CreatedAt, &t.UpdatedAt)
	return t, err
}

func (tq TaskQueue) qDue() string {
	return `SELECT run_id FROM ` + tq.table + ` WHERE status IN ('queued','retrying','blocked') AND next_attempt_at <= ?
		ORDER BY next_attempt_at LIMIT ?`
}

func (tq TaskQueue) qNextDue() string {
	return `SELECT MIN(next_attempt_at) FROM ` + tq.table + ` WHERE status IN ('queued','retrying','blocked')`
}

// EnqueueTask adds a task unless the run already has one; it reports whether it was added.
func (q Q) EnqueueTask(ctx context.Context, tq TaskQueue, t Task) (bool, error) {
	cols := `run_id, job_id, node_id, target_type, target_snapshot_json, status, attempts, next_attempt_at, created_at, updated_at`
	args := []any{t.RunID, t.JobID, t.NodeID, t.TargetType, t.TargetSnapshotJSON, TaskQueued, 0, t.NextAttemptAt, t.CreatedAt, t.CreatedAt}
	if tq.reasonCol == "reason" {
		cols += ", reason"
		args = append(args, t.Reason)
	}
	res, err := q.ex.ExecContext(ctx, `INSERT OR IGNORE INTO `+tq.table+`(`+cols+`) VALUES (`+placeholders(len(args))+`)`, args...)
	if err != nil {
		return false, fmt.Errorf("enqueue %s task for run %s: %w", tq.name, t.RunID, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// GetTask returns the task of a run or ErrNotFound.
func (q Q) GetTask(ctx context.Context, tq TaskQueue, runID string) (Task, error) {
	t, err := scanTask(q.ex.QueryRowContext(ctx, `SELECT `+tq.columns()+` FROM `+tq.table+` WHERE run_id = ?`, runID))
	if err != nil {
		return Task{}, fmt.Errorf("get %s task %s: %w", tq.name, runID, notFound(err))
	}
	return t, nil
}

// ClaimDueTasks moves up to limit due tasks to running, counting the attempt, and returns them.
func (q Q) ClaimDueTasks(ctx context.Context, tq TaskQueue, now int64, limit int) ([]Task, error) {
	rows, err := q.ex.QueryContext(ctx, `UPDATE `+tq.table+` SET status = 'running', attempts = attempts + 1,
		last_attempt_at = ?, updated_at = ? WHERE run_id IN (`+tq.qDue()+`) RETURNING `+tq.columns(), now, now, now, limit)
	if err != nil {
		return nil, fmt.Errorf("claim %s tasks: %w", tq.name, err)
	}
	defer rows.Close()
	var out []Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, fmt.Errorf("claim %s tasks: %w", tq.name, err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// FinishTask records the outcome of a claimed task; it applies only while the task is running, so a
// manual action taken meanwhile wins.
func (q Q) FinishTask(ctx context.Context, tq TaskQueue, runID, status string, nextAttemptAt int64, errKind, errMsg *string, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE `+tq.table+` SET status = ?, next_attempt_at = ?, last_error_kind = ?,
		last_error = ?, updated_at = ? WHERE run_id = ? AND status = 'running'`, status, nextAttemptAt, errKind, errMsg, now, runID)
	if err != nil {
		return false, fmt.Errorf("finish %s task %s: %w", tq.name, runID, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// NextTaskDue returns the earliest next_attempt_at of a waiting task.
func (q Q) NextTaskDue(ctx context.Context, tq TaskQueue) (int64, bool, error) {
	var at *int64
	if err := q.ex.QueryRowContext(ctx, tq.qNextDue()).Scan(&at); err != nil {
		return 0, false, fmt.Errorf("next due %s task: %w", tq.name, err)
	}
	if at == nil {
		return 0, false, nil
	}
	return *at, true, nil
}

// RecoverStuckTasks returns tasks left running since before cutoff (a crash or a hung worker) to
// retrying at nextAt.
func (q Q) RecoverStuckTasks(ctx context.Context, tq TaskQueue, cutoff, nextAt, now int64) (int64, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE `+tq.table+` SET status = 'retrying', next_attempt_at = ?, updated_at = ?
		WHERE status = 'running' AND last_attempt_at < ?`, nextAt, now, cutoff)
	if err != nil {
		return 0, fmt.Errorf("recover stuck %s tasks: %w", tq.name, err)
	}
	return res.RowsAffected()
}

// RetryTaskNow makes a retrying, blocked, ignored or abandoned task due now with its attempts reset.
func (q Q) RetryTaskNow(ctx context.Context, tq TaskQueue, runID string, now int64) error {
	return q.manualTaskAction(ctx, tq, runID, `UPDATE `+tq.table+` SET status = 'queued', attempts = 0, next_attempt_at = ?,
		ignored_at = NULL, ignored_by_user_id = NULL, ignore_reason = NULL, updated_at = ?
		WHERE run_id = ? AND status IN ('retrying','blocked','ignored','abandoned','queued')`, now, now, runID)
}

// IgnoreTask parks a task until someone retries it.
func (q Q) IgnoreTask(ctx context.Context, tq TaskQueue, runID string, userID *int64, reason *string, now int64) error {
	return q.manualTaskAction(ctx, tq, runID, `UPDATE `+tq.table+` SET status = 'ignored', ignored_at = ?,
		ignored_by_user_id = ?, ignore_reason = ?, updated_at = ?
		WHERE run_id = ? AND status IN ('queued','retrying','blocked','abandoned')`, now, userID, reason, now, runID)
}

func (q Q) manualTaskAction(ctx context.Context, tq TaskQueue, runID, stmt string, args ...any) error {
	res, err := q.ex.ExecContext(ctx, stmt, args...)
	if err != nil {
		return fmt.Errorf("update %s task %s: %w", tq.name, runID, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	t, err := q.GetTask(ctx, tq, runID)
	if err != nil {
		return err
	}
	if t.Status == TaskRunning {
		return fmt.Errorf("%s task %s: %w", tq.name, runID, ErrTaskRunning)
	}
	return fmt.Errorf("%s task %s is %s: %w", tq.name, runID, t.Status, ErrTaskState)
}

// TaskEvent is an entry of a task's log.
type TaskEvent struct {
	Seq        int64   `json:"seq"`
	TS         int64   `json:"ts"`
	Level      string  `json:"level"`
	Kind       string  `json:"kind"`
	Message    string  `json:"message"`
	FieldsJSON *string `json:"-"`
}

// AppendTaskEvent adds an event to a task's log. Call it inside Write.
func (q Q) AppendTaskEvent(ctx context.Context, tq TaskQueue, runID string, e TaskEvent) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO `+tq.events+`(run_id, seq, ts, level, kind, message, fields_json)
		SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ? FROM `+tq.events+` WHERE run_id = ?`,
		runID, e.TS, e.Level, e.Kind, e.Message, e.FieldsJSON, runID)
	if err != nil {
		return fmt.Errorf("append %s event for %s: %w", tq.name, runID, err)
	}
	return nil
}

// ListTaskEvents returns a task's log in order (at most limit entries).
func (q Q) ListTaskEvents(ctx context.Context, tq TaskQueue, runID string, limit int) ([]TaskEvent, error) {
	rows, err := q.ex.QueryContext(ctx, `SELECT seq, ts, level, kind, message, fields_json FROM `+tq.events+`
		WHERE run_id = ? ORDER BY seq LIMIT ?`, runID, limit)
	if err != nil {
		return nil, fmt.Errorf("list %s events of %s: %w", tq.name, runID, err)
	}
	defer rows.Close()
	var out []TaskEvent
	for rows.Next() {
		var e TaskEvent
		if err := rows.Scan(&e.Seq, &e.TS, &e.Level, &e.Kind, &e.Message, &e.FieldsJSON); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// TaskFilter narrows ListTasksFiltered; empty fields match everything.
type TaskFilter struct {
	Status, JobID, NodeID, TargetType string
}

// ListTasksFiltered returns the tasks that match f, newest change first (the maintenance API's
// query parameters).
func (q Q) ListTasksFiltered(ctx context.Context, tq TaskQueue, f TaskFilter, limit, offset int) ([]Task, int, error) {
	var conds []string
	var args []any
	for _, c := range []struct{ col, val string }{{"status", f.Status}, {"job_id", f.JobID}, {"node_id", f.NodeID}, {"target_type", f.TargetType}} {
		if c.val != "" {
			conds, args = append(conds, c.col+" = ?"), append(args, c.val)
		}
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	var total int
	if err := q.ex.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+tq.table+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count %s tasks: %w", tq.name, err)
	}
	rows, err := q.ex.QueryContext(ctx, `SELECT `+tq.columns()+` FROM `+tq.table+where+
		` ORDER BY updated_at DESC, run_id DESC LIMIT ? OFFSET ?`, append(args, limit, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("list %s tasks: %w", tq.name, err)
	}
	defer rows.Close()
	out := []Task{}
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("list %s tasks: %w", tq.name, err)
		}
		out = append(out, t)
	}
	return out, total, rows.Err()
}

const qRetentionDeletesSince = `SELECT COUNT(*) FROM artifact_delete_tasks WHERE job_id = ? AND reason = 'retention'
	AND created_at >= ?`

// CountRetentionDeletesSince counts the deletes retention queued for a job since since (for the
// per-day cap).
func (q Q) CountRetentionDeletesSince(ctx context.Context, jobID string, since int64) (int, error) {
	var n int
	err := q.ex.QueryRowContext(ctx, qRetentionDeletesSince, jobID, since).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count retention deletes of job %s: %w", jobID, err)
	}
	return n, nil
}

// ListCleanupCandidates returns up to limit runs that did not succeed, started before cutoff, and
// have no cleanup task yet, with what cleaning them needs.
func (q Q) ListCleanupCandidates(ctx context.Context, cutoff int64, limit int) ([]Task, error) {
	rows, err := q.ex.QueryContext(ctx, `SELECT r.id, r.job_id, COALESCE(j.agent_id, 'hub'), r.target_snapshot_json
		FROM runs r JOIN jobs j ON j.id = r.job_id
		WHERE r.status IN ('failed','canceled') AND r.started_at < ? AND r.target_snapshot_json IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM incomplete_cleanup_tasks t WHERE t.run_id = r.id)
		ORDER BY r.started_at LIMIT ?`, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("list cleanup candidates: %w", err)
	}
	defer rows.Close()
	var out []Task
	for rows.Next() {
		var t Task
		if err := rows.Scan(&t.RunID, &t.JobID, &t.NodeID, &t.TargetSnapshotJSON); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Name is how logs and errors name the queue.
func (tq TaskQueue) Name() string { return tq.name }

// JobSpec is a job's id and spec.
type JobSpec struct {
	ID       string
	SpecJSON string
}

// ListLiveJobSpecs returns the id and spec of every job that is not archived.
func (q Q) ListLiveJobSpecs(ctx context.Context) ([]JobSpec, error) {
	rows, err := q.ex.QueryContext(ctx, `SELECT id, spec_json FROM jobs WHERE archived_at IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("list live jobs: %w", err)
	}
	defer rows.Close()
	var out []JobSpec
	for rows.Next() {
		var j JobSpec
		if err := rows.Scan(&j.ID, &j.SpecJSON); err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

package storage

import (
	"context"
	"database/sql"
	"errors"
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
	// qListRunsByJob breaks ties like qLatestRunOfJob, so that the job list's latest run is the
	// first of this list even for runs started in the same second.
	qListRunsByJob   = `SELECT ` + runColumns + ` FROM runs WHERE job_id = ? ORDER BY started_at DESC, rowid DESC LIMIT ?`
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

// Run queue and lifecycle statements. The queue is the runs table itself: a run is queued until a
// worker claims it, so a crash never loses one.
const (
	// qActiveRunOfJob answers the overlap check of every trigger.
	qActiveRunOfJob = `SELECT 1 FROM runs WHERE job_id = ? AND status IN ('queued','running') LIMIT 1`
	qLiveRunsOfJob  = `SELECT id FROM runs WHERE job_id = ? AND status IN ('queued','running')`
	// qNoRunningSibling keeps a job from running twice at once. It is written against the status
	// index: running runs are few, a job's history is not.
	qNoRunningSibling = `NOT EXISTS (SELECT 1 FROM runs x WHERE x.status = 'running' AND x.job_id = r.job_id)`
	// qNoOlderQueuedSibling keeps only the oldest startable run of each job (in the queue's
	// order), so that a job with a long backlog takes one candidate of a batch, not all of them,
	// and never holds up the other jobs. It also goes through the status index.
	qNoOlderQueuedSibling = `NOT EXISTS (SELECT 1 FROM runs o WHERE o.status = 'queued' AND o.job_id = r.job_id
		AND o.cancel_requested_at IS NULL AND (o.started_at, o.rowid) < (r.started_at, r.rowid))`
	qQueuedHubRuns = `SELECT ` + runColumnsR + `, ` + jobColumnsJ + ` FROM runs r JOIN jobs j ON j.id = r.job_id
		WHERE r.status = 'queued' AND r.cancel_requested_at IS NULL AND j.agent_id IS NULL
		AND ` + qNoRunningSibling + ` AND ` + qNoOlderQueuedSibling + `
		ORDER BY r.started_at, r.rowid LIMIT ?`
	qQueuedAgentRuns = `SELECT ` + runColumnsR + `, ` + jobColumnsJ + ` FROM runs r JOIN jobs j ON j.id = r.job_id
		WHERE r.status = 'queued' AND r.cancel_requested_at IS NULL AND j.agent_id = ?
		AND ` + qNoRunningSibling + ` AND ` + qNoOlderQueuedSibling + `
		ORDER BY r.started_at, r.rowid LIMIT ?`
	qQueuedRunAgents = `SELECT DISTINCT j.agent_id FROM runs r JOIN jobs j ON j.id = r.job_id
		WHERE r.status = 'queued' AND r.cancel_requested_at IS NULL AND j.agent_id IS NOT NULL`
	qClaimRun = `UPDATE runs AS r SET status = 'running', started_at = ?
		WHERE r.id = ? AND r.status = 'queued' AND r.cancel_requested_at IS NULL AND ` + qNoRunningSibling
	// qFinishRun applies a terminal status only while the run is live (first result wins) and
	// turns it into canceled whenever a cancel was requested (cancel wins). A NULL progress keeps
	// the stored one.
	qFinishRun = `UPDATE runs SET
		status = CASE WHEN cancel_requested_at IS NOT NULL THEN 'canceled' ELSE ? END,
		ended_at = ?,
		summary_json = CASE WHEN cancel_requested_at IS NOT NULL THEN NULL ELSE ? END,
		error = CASE WHEN cancel_requested_at IS NOT NULL THEN 'canceled' ELSE ? END,
		progress_json = COALESCE(?, progress_json)
		WHERE id = ? AND status IN ('queued','running')`
	qRequestCancel = `UPDATE runs SET cancel_requested_at = ?, cancel_requested_by_user_id = ?, cancel_reason = ?
		WHERE id = ? AND cancel_requested_at IS NULL AND status IN ('queued','running')`
	qSetProgress = `UPDATE runs SET progress_json = ? WHERE id = ? AND status IN ('queued','running')`
	// qInterruptedRuns are the runs a Hub crash left running. An agent's run with an open task is
	// not among them: the agent may still be working on it and will report.
	qInterruptedRuns = `SELECT ` + runColumnsR + ` FROM runs r JOIN jobs j ON j.id = r.job_id
		WHERE r.status = 'running' AND NOT (j.agent_id IS NOT NULL AND EXISTS (
			SELECT 1 FROM agent_tasks t WHERE t.run_id = r.id AND t.completed_at IS NULL))`
	// qPruneRuns deletes a batch of old finished runs, sparing those whose snapshot still exists
	// or may exist.
	qPruneRuns = `DELETE FROM runs WHERE id IN (SELECT r.id FROM runs r WHERE r.ended_at < ? AND NOT EXISTS (
		SELECT 1 FROM run_artifacts a WHERE a.run_id = r.id AND a.status IN ('present','deleting','error')) LIMIT ?)`
	qRunDetail = `SELECT ` + runColumnsR + `, j.name, j.agent_id, a.name FROM runs r JOIN jobs j ON j.id = r.job_id
		LEFT JOIN agents a ON a.id = j.agent_id WHERE r.id = ?`
)

// The column lists with table aliases, for joins; TestPrefixedColumns keeps them in step.
const (
	runColumnsR = `r.id, r.job_id, r.status, r.started_at, r.ended_at, r.summary_json, r.error,
	r.target_snapshot_json, r.progress_json, r.cancel_requested_at, r.cancel_requested_by_user_id, r.cancel_reason`
	jobColumnsJ = `j.id, j.name, j.agent_id, j.schedule, j.schedule_timezone, j.overlap_policy, j.missed_run_policy,
	j.last_scheduled_at, j.schedule_baseline_at, j.spec_json, j.created_at, j.updated_at, j.archived_at`
)

// rowPrefix scans leading columns (the run's) into its own destinations before the rest.
type rowPrefix struct {
	sc   interface{ Scan(...any) error }
	head []any
}

func (p rowPrefix) Scan(dest ...any) error { return p.sc.Scan(append(p.head, dest...)...) }

// RunWithJob is a run and the job it belongs to.
type RunWithJob struct {
	Run Run
	Job Job
}

// HasActiveRun reports whether the job has a queued or running run.
func (q Q) HasActiveRun(ctx context.Context, jobID string) (bool, error) {
	var one int
	err := q.ex.QueryRowContext(ctx, qActiveRunOfJob, jobID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check active run of job %s: %w", jobID, err)
	}
	return true, nil
}

// ListLiveRunIDs returns the ids of the job's queued and running runs.
func (q Q) ListLiveRunIDs(ctx context.Context, jobID string) ([]string, error) {
	return q.queryStrings(ctx, "list live runs of job "+jobID, qLiveRunsOfJob, jobID)
}

// ListQueuedHubRuns returns the queued runs of Hub jobs that may start now (no cancel requested,
// no other run of the job running), oldest first, at most one per job: each job's oldest.
func (q Q) ListQueuedHubRuns(ctx context.Context, limit int) ([]RunWithJob, error) {
	return q.listRunsWithJobs(ctx, "list queued hub runs", qQueuedHubRuns, limit)
}

// ListQueuedAgentRuns is ListQueuedHubRuns for the jobs of one agent.
func (q Q) ListQueuedAgentRuns(ctx context.Context, agentID string, limit int) ([]RunWithJob, error) {
	return q.listRunsWithJobs(ctx, "list queued runs of agent "+agentID, qQueuedAgentRuns, agentID, limit)
}

// ListQueuedRunAgents returns the agents that have queued runs waiting.
func (q Q) ListQueuedRunAgents(ctx context.Context) ([]string, error) {
	return q.queryStrings(ctx, "list agents with queued runs", qQueuedRunAgents)
}

func (q Q) listRunsWithJobs(ctx context.Context, what, query string, args ...any) ([]RunWithJob, error) {
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []RunWithJob
	for rows.Next() {
		var rj RunWithJob
		r, j := &rj.Run, &rj.Job
		if err := scanJobWith(rowPrefix{rows, []any{&r.ID, &r.JobID, &r.Status, &r.StartedAt, &r.EndedAt, &r.SummaryJSON, &r.Error,
			&r.TargetSnapshotJSON, &r.ProgressJSON, &r.CancelRequestedAt, &r.CancelRequestedByUserID, &r.CancelReason}}, j); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, rj)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// ClaimRun moves a queued run to running with its real start time. It reports false when the
// run is no longer claimable: not queued, cancel requested, or another run of its job running.
func (q Q) ClaimRun(ctx context.Context, id string, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, qClaimRun, now, id)
	if err != nil {
		return false, fmt.Errorf("claim run %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim run %s: %w", id, err)
	}
	return n == 1, nil
}

// SetRunTargetSnapshot stores the redacted description of where the run writes.
func (q Q) SetRunTargetSnapshot(ctx context.Context, id, snapshotJSON string) error {
	if _, err := q.ex.ExecContext(ctx, `UPDATE runs SET target_snapshot_json = ? WHERE id = ?`, snapshotJSON, id); err != nil {
		return fmt.Errorf("set target snapshot of run %s: %w", id, err)
	}
	return nil
}

// RunFinish is the terminal write of a run.
type RunFinish struct {
	ID          string
	Status      string // success | failed | canceled
	EndedAt     int64
	SummaryJSON *string
	Error       *string
	// ProgressJSON, when set, replaces the stored progress (the last throttled value).
	ProgressJSON *string
}

// FinishRun applies f if the run is still queued or running and returns the run as stored
// afterwards. applied is false when the run had already ended (first result wins); its status
// becomes canceled, with no summary and error "canceled", whenever a cancel was requested.
func (q Q) FinishRun(ctx context.Context, f RunFinish) (run Run, applied bool, err error) {
	res, err := q.ex.ExecContext(ctx, qFinishRun, f.Status, f.EndedAt, f.SummaryJSON, f.Error, f.ProgressJSON, f.ID)
	if err != nil {
		return Run{}, false, fmt.Errorf("finish run %s: %w", f.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return Run{}, false, fmt.Errorf("finish run %s: %w", f.ID, err)
	}
	run, err = q.GetRun(ctx, f.ID)
	return run, n == 1, err
}

// RequestRunCancel records a cancel request once, on a queued or running run. It reports false
// when the run had ended or a cancel was already recorded.
func (q Q) RequestRunCancel(ctx context.Context, id string, at int64, byUserID *int64, reason *string) (bool, error) {
	res, err := q.ex.ExecContext(ctx, qRequestCancel, at, byUserID, reason, id)
	if err != nil {
		return false, fmt.Errorf("request cancel of run %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("request cancel of run %s: %w", id, err)
	}
	return n == 1, nil
}

// SetRunProgress stores the latest progress of a live run; it reports false when the run has
// ended (a late progress never touches a finished run).
func (q Q) SetRunProgress(ctx context.Context, id, progressJSON string) (bool, error) {
	res, err := q.ex.ExecContext(ctx, qSetProgress, progressJSON, id)
	if err != nil {
		return false, fmt.Errorf("set progress of run %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("set progress of run %s: %w", id, err)
	}
	return n == 1, nil
}

// ListInterruptedRuns returns the running runs that nobody can still finish after a Hub restart:
// every Hub-executed one, and agent runs without an open agent task.
func (q Q) ListInterruptedRuns(ctx context.Context) ([]Run, error) {
	return q.listRuns(ctx, "list interrupted runs", qInterruptedRuns)
}

// PruneRuns deletes up to limit runs that ended before `before` and have no snapshot that is
// present, being deleted or in error; events and notifications go with them by cascade.
func (q Q) PruneRuns(ctx context.Context, before int64, limit int) (int64, error) {
	res, err := q.ex.ExecContext(ctx, qPruneRuns, before, limit)
	if err != nil {
		return 0, fmt.Errorf("prune runs ended before %d: %w", before, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune runs ended before %d: %w", before, err)
	}
	return n, nil
}

// RunDetail is a run with the names the run page shows.
type RunDetail struct {
	Run
	JobName   string
	AgentID   *string // nil: the Hub ran it
	AgentName *string
}

// GetRunDetail returns a run with its job's name and node, or ErrNotFound.
func (q Q) GetRunDetail(ctx context.Context, id string) (RunDetail, error) {
	var d RunDetail
	r := &d.Run
	err := q.ex.QueryRowContext(ctx, qRunDetail, id).Scan(&r.ID, &r.JobID, &r.Status, &r.StartedAt, &r.EndedAt,
		&r.SummaryJSON, &r.Error, &r.TargetSnapshotJSON, &r.ProgressJSON, &r.CancelRequestedAt,
		&r.CancelRequestedByUserID, &r.CancelReason, &d.JobName, &d.AgentID, &d.AgentName)
	if err != nil {
		return RunDetail{}, fmt.Errorf("get run %s: %w", id, notFound(err))
	}
	return d, nil
}

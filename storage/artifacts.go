package storage

import (
	"context"
	"fmt"
	"strings"
)

// Snapshot statuses (run_artifacts.status).
const (
	SnapshotPresent  = "present"
	SnapshotDeleting = "deleting"
	SnapshotDeleted  = "deleted"
	SnapshotMissing  = "missing"
	SnapshotError    = "error"
)

// RunArtifact is the index row of a snapshot: what a successful run left on its target.
type RunArtifact struct {
	RunID              string  `json:"run_id"`
	JobID              string  `json:"job_id"`
	NodeID             string  `json:"node_id"`
	TargetType         string  `json:"target_type"`
	TargetSnapshotJSON string  `json:"-"`
	ArtifactFormat     string  `json:"artifact_format"`
	Status             string  `json:"status"`
	StartedAt          int64   `json:"started_at"`
	EndedAt            int64   `json:"ended_at"`
	SourceFiles        *int64  `json:"source_files"`
	SourceDirs         *int64  `json:"source_dirs"`
	SourceBytes        *int64  `json:"source_bytes"`
	TransferBytes      *int64  `json:"transfer_bytes"`
	LastErrorKind      *string `json:"last_error_kind"`
	LastError          *string `json:"last_error"`
	LastAttemptAt      *int64  `json:"last_attempt_at"`
	PinnedAt           *int64  `json:"pinned_at"`
	PinnedByUserID     *int64  `json:"pinned_by_user_id"`
	CreatedAt          int64   `json:"created_at"`
	UpdatedAt          int64   `json:"updated_at"`
}

const artifactColumns = `run_id, job_id, node_id, target_type, target_snapshot_json, artifact_format, status,
	started_at, ended_at, source_files, source_dirs, source_bytes, transfer_bytes, last_error_kind, last_error,
	last_attempt_at, pinned_at, pinned_by_user_id, created_at, updated_at`

const (
	// Keyset page of a job's snapshots, newest first; the cursor is the last row's (ended_at, run_id).
	qSnapshotsPage = `SELECT ` + artifactColumns + ` FROM run_artifacts WHERE job_id = ?
		AND (ended_at < ? OR (ended_at = ? AND run_id < ?)) ORDER BY ended_at DESC, run_id DESC LIMIT ?`
	qSnapshotsPageByStatus = `SELECT ` + artifactColumns + ` FROM run_artifacts WHERE job_id = ? AND status = ?
		AND (ended_at < ? OR (ended_at = ? AND run_id < ?)) ORDER BY ended_at DESC, run_id DESC LIMIT ?`
)

func scanArtifact(sc interface{ Scan(...any) error }) (RunArtifact, error) {
	var a RunArtifact
	err := sc.Scan(&a.RunID, &a.JobID, &a.NodeID, &a.TargetType, &a.TargetSnapshotJSON, &a.ArtifactFormat, &a.Status,
		&a.StartedAt, &a.EndedAt, &a.SourceFiles, &a.SourceDirs, &a.SourceBytes, &a.TransferBytes, &a.LastErrorKind,
		&a.LastError, &a.LastAttemptAt, &a.PinnedAt, &a.PinnedByUserID, &a.CreatedAt, &a.UpdatedAt)
	return a, err
}

// UpsertRunArtifact indexes a snapshot; a repeat (an agent re-sending its result or an upload)
// refreshes the metrics but keeps the location (target snapshot), status, pin and creation time:
// where a snapshot lives is recorded once, and nothing an agent sends later moves it.
func (q Q) UpsertRunArtifact(ctx context.Context, a RunArtifact) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO run_artifacts(`+artifactColumns+`)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(run_id) DO UPDATE SET artifact_format = excluded.artifact_format, ended_at = excluded.ended_at,
			source_files = excluded.source_files, source_dirs = excluded.source_dirs,
			source_bytes = excluded.source_bytes, transfer_bytes = excluded.transfer_bytes,
			updated_at = excluded.updated_at`,
		a.RunID, a.JobID, a.NodeID, a.TargetType, a.TargetSnapshotJSON, a.ArtifactFormat, a.Status,
		a.StartedAt, a.EndedAt, a.SourceFiles, a.SourceDirs, a.SourceBytes, a.TransferBytes, a.LastErrorKind,
		a.LastError, a.LastAttemptAt, a.PinnedAt, a.PinnedByUserID, a.CreatedAt, a.UpdatedAt)
	if err != nil {
		return fmt.Errorf("index snapshot of run %s: %w", a.RunID, err)
	}
	return nil
}

// GetRunArtifact returns a job's snapshot or ErrNotFound.
func (q Q) GetRunArtifact(ctx context.Context, jobID, runID string) (RunArtifact, error) {
	a, err := scanArtifact(q.ex.QueryRowContext(ctx, `SELECT `+artifactColumns+` FROM run_artifacts
		WHERE run_id = ? AND job_id = ?`, runID, jobID))
	if err != nil {
		return RunArtifact{}, fmt.Errorf("get snapshot %s: %w", runID, notFound(err))
	}
	return a, nil
}

// SnapshotCursor positions a keyset page: rows strictly older than (EndedAt, RunID).
type SnapshotCursor struct {
	EndedAt int64  `json:"ended_at"`
	RunID   string `json:"run_id"`
}

// FirstSnapshotPage is the cursor that starts from the newest snapshot.
var FirstSnapshotPage = SnapshotCursor{EndedAt: 1<<62 - 1, RunID: ""}

// ListSnapshots returns up to limit snapshots of a job older than cur, newest first; status ""
// means any. Keyset paging never skips a row whose status changes between pages.
func (q Q) ListSnapshots(ctx context.Context, jobID, status string, cur SnapshotCursor, limit int) ([]RunArtifact, error) {
	var rows interface {
		Next() bool
		Scan(...any) error
		Err() error
		Close() error
	}
	var err error
	if cur == FirstSnapshotPage {
		cur.RunID = "\U0010FFFF" // sorts after every id: the first page includes the newest rows
	}
	if status == "" {
		rows, err = q.ex.QueryContext(ctx, qSnapshotsPage, jobID, cur.EndedAt, cur.EndedAt, cur.RunID, limit)
	} else {
		rows, err = q.ex.QueryContext(ctx, qSnapshotsPageByStatus, jobID, status, cur.EndedAt, cur.EndedAt, cur.RunID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots of job %s: %w", jobID, err)
	}
	defer rows.Close()
	var out []RunArtifact
	for rows.Next() {
		a, err := scanArtifact(rows)
		if err != nil {
			return nil, fmt.Errorf("list snapshots of job %s: %w", jobID, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// SetSnapshotPinned pins (userID non-nil) or unpins a snapshot.
func (q Q) SetSnapshotPinned(ctx context.Context, jobID, runID string, pin bool, userID *int64, now int64) error {
	var res interface{ RowsAffected() (int64, error) }
	var err error
	if pin {
		res, err = q.ex.ExecContext(ctx, `UPDATE run_artifacts SET pinned_at = COALESCE(pinned_at, ?),
			pinned_by_user_id = COALESCE(pinned_by_user_id, ?), updated_at = ? WHERE run_id = ? AND job_id = ?`,
			now, userID, now, runID, jobID)
	} else {
		res, err = q.ex.ExecContext(ctx, `UPDATE run_artifacts SET pinned_at = NULL, pinned_by_user_id = NULL,
			updated_at = ? WHERE run_id = ? AND job_id = ?`, now, runID, jobID)
	}
	return affectedOne(res, err, "pin snapshot "+runID)
}

// SetSnapshotStatus records a snapshot's status and last error (nil clears it).
func (q Q) SetSnapshotStatus(ctx context.Context, runID, status string, errKind, errMsg *string, now int64) error {
	_, err := q.ex.ExecContext(ctx, `UPDATE run_artifacts SET status = ?, last_error_kind = ?, last_error = ?,
		last_attempt_at = ?, updated_at = ? WHERE run_id = ?`, status, errKind, errMsg, now, now, runID)
	if err != nil {
		return fmt.Errorf("set status of snapshot %s: %w", runID, err)
	}
	return nil
}

// ListRetentionCandidates returns a job's present snapshots, newest first, at most limit.
func (q Q) ListRetentionCandidates(ctx context.Context, jobID string, limit int) ([]RunArtifact, error) {
	return q.ListSnapshots(ctx, jobID, SnapshotPresent, FirstSnapshotPage, limit)
}

// placeholders returns "?, ?, ?" for n arguments.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

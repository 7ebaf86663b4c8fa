package storage

import (
	"context"
	"errors"
	"fmt"
)

// Operation kinds and statuses. An operation is a restore or verify of a run's snapshot; it never
// waits in a queue, so its statuses are those of a run minus queued and rejected.
const (
	OperationRestore = "restore"
	OperationVerify  = "verify"

	OperationRunning  = "running"
	OperationSuccess  = "success"
	OperationFailed   = "failed"
	OperationCanceled = "canceled"
)

// Operation is a row of operations.
type Operation struct {
	ID                      string
	Kind                    string
	Status                  string
	NodeID                  string
	StartedAt               int64
	EndedAt                 *int64
	SummaryJSON             *string
	Error                   *string
	SubjectKind             *string
	SubjectID               *string
	ProgressJSON            *string
	CancelRequestedAt       *int64
	CancelRequestedByUserID *int64
	CancelReason            *string
	CreatedAt               int64
	UpdatedAt               int64
}

const operationColumns = `id, kind, status, node_id, started_at, ended_at, summary_json, error, subject_kind,
	subject_id, progress_json, cancel_requested_at, cancel_requested_by_user_id, cancel_reason, created_at, updated_at`

const (
	qOperationsBySubject = `SELECT ` + operationColumns + ` FROM operations WHERE subject_kind = ? AND subject_id = ?
		ORDER BY started_at DESC, id DESC LIMIT ?`
	qOperationsByStatus = `SELECT ` + operationColumns + ` FROM operations WHERE status = ? ORDER BY started_at LIMIT ?`
	// qInterruptedOperations are the operations a Hub crash left running. One that an agent runs
	// with its task still open is not among them: the agent may still be working and will report.
	qInterruptedOperations = `SELECT ` + operationColumns + ` FROM operations o WHERE o.status = 'running'
		AND NOT EXISTS (SELECT 1 FROM agent_tasks t WHERE t.id = o.id AND t.completed_at IS NULL)
		ORDER BY o.started_at LIMIT ?`
	qOperationEvents = `SELECT seq, ts, level, kind, message, fields_json FROM operation_events
		WHERE op_id = ? AND seq > ? ORDER BY seq LIMIT ?`
)

func scanOperation(sc interface{ Scan(...any) error }) (Operation, error) {
	var o Operation
	err := sc.Scan(&o.ID, &o.Kind, &o.Status, &o.NodeID, &o.StartedAt, &o.EndedAt, &o.SummaryJSON, &o.Error,
		&o.SubjectKind, &o.SubjectID, &o.ProgressJSON, &o.CancelRequestedAt, &o.CancelRequestedByUserID,
		&o.CancelReason, &o.CreatedAt, &o.UpdatedAt)
	return o, err
}

// InsertOperation stores a new operation.
func (q Q) InsertOperation(ctx context.Context, o Operation) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO operations(`+operationColumns+`)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		o.ID, o.Kind, o.Status, o.NodeID, o.StartedAt, o.EndedAt, o.SummaryJSON, o.Error, o.SubjectKind,
		o.SubjectID, o.ProgressJSON, o.CancelRequestedAt, o.CancelRequestedByUserID, o.CancelReason, o.CreatedAt, o.UpdatedAt)
	if err != nil {
		return fmt.Errorf("insert operation %s: %w", o.ID, err)
	}
	return nil
}

// GetOperation returns an operation or ErrNotFound.
func (q Q) GetOperation(ctx context.Context, id string) (Operation, error) {
	o, err := scanOperation(q.ex.QueryRowContext(ctx, `SELECT `+operationColumns+` FROM operations WHERE id = ?`, id))
	if err != nil {
		return Operation{}, fmt.Errorf("get operation %s: %w", id, notFound(err))
	}
	return o, nil
}

// ListOperationsBySubject returns the newest operations about one subject (a run), newest first.
func (q Q) ListOperationsBySubject(ctx context.Context, kind, id string, limit int) ([]Operation, error) {
	return q.listOperations(ctx, "list operations of "+kind+" "+id, qOperationsBySubject, kind, id, limit)
}

// ListOperationsByStatus returns operations in a status, oldest first.
func (q Q) ListOperationsByStatus(ctx context.Context, status string, limit int) ([]Operation, error) {
	return q.listOperations(ctx, "list "+status+" operations", qOperationsByStatus, status, limit)
}

// ListInterruptedOperations returns up to limit running operations that nobody can still finish
// after a Hub restart: every Hub-executed one, and agent restores without an open agent task.
func (q Q) ListInterruptedOperations(ctx context.Context, limit int) ([]Operation, error) {
	return q.listOperations(ctx, "list interrupted operations", qInterruptedOperations, limit)
}

func (q Q) listOperations(ctx context.Context, what, query string, args ...any) ([]Operation, error) {
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	out := []Operation{}
	for rows.Next() {
		o, err := scanOperation(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// SetOperationProgress stores the latest progress of a running operation; it is ignored once the
// operation has ended.
func (q Q) SetOperationProgress(ctx context.Context, id, progressJSON string, now int64) error {
	_, err := q.ex.ExecContext(ctx, `UPDATE operations SET progress_json = ?, updated_at = ?
		WHERE id = ? AND status = 'running'`, progressJSON, now, id)
	if err != nil {
		return fmt.Errorf("set progress of operation %s: %w", id, err)
	}
	return nil
}

// RequestOperationCancel records a cancel request once (a repeat keeps the first) and returns the
// operation as stored. It changes nothing on an operation that has ended.
func (q Q) RequestOperationCancel(ctx context.Context, id string, userID *int64, reason *string, now int64) (Operation, error) {
	if _, err := q.ex.ExecContext(ctx, `UPDATE operations SET cancel_requested_at = ?, cancel_requested_by_user_id = ?,
		cancel_reason = ?, updated_at = ? WHERE id = ? AND status = 'running' AND cancel_requested_at IS NULL`,
		now, userID, reason, now, id); err != nil {
		return Operation{}, fmt.Errorf("request cancel of operation %s: %w", id, err)
	}
	return q.GetOperation(ctx, id)
}

// OperationFinish is the terminal write of an operation.
type OperationFinish struct {
	ID           string
	Status       string // success | failed | canceled
	EndedAt      int64
	SummaryJSON  *string
	Error        *string
	ProgressJSON *string // the last progress value; nil keeps the stored one
}

// FinishOperation ends a running operation. A requested cancel wins over any other outcome but
// success. It reports false (and changes nothing) when the operation had already ended.
func (q Q) FinishOperation(ctx context.Context, f OperationFinish) (Operation, bool, error) {
	row := q.ex.QueryRowContext(ctx, `UPDATE operations SET
			status = CASE WHEN cancel_requested_at IS NOT NULL AND ? <> 'success' THEN 'canceled' ELSE ? END,
			ended_at = ?, summary_json = COALESCE(?, summary_json), error = ?,
			progress_json = COALESCE(?, progress_json), updated_at = ?
		WHERE id = ? AND status = 'running' RETURNING `+operationColumns,
		f.Status, f.Status, f.EndedAt, f.SummaryJSON, f.Error, f.ProgressJSON, f.EndedAt, f.ID)
	o, err := scanOperation(row)
	if err != nil {
		if errors.Is(notFound(err), ErrNotFound) {
			return Operation{}, false, nil
		}
		return Operation{}, false, fmt.Errorf("finish operation %s: %w", f.ID, err)
	}
	return o, true, nil
}

// OperationEvent is one entry of an operation's append-only event log.
type OperationEvent struct {
	Seq        int64   `json:"seq"`
	TS         int64   `json:"ts"`
	Level      string  `json:"level"`
	Kind       string  `json:"kind"`
	Message    string  `json:"message"`
	FieldsJSON *string `json:"-"`
}

// AppendOperationEvent adds an event with the operation's next sequence number.
func (q Q) AppendOperationEvent(ctx context.Context, opID string, e OperationEvent) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO operation_events(op_id, seq, ts, level, kind, message, fields_json)
		SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ? FROM operation_events WHERE op_id = ?`,
		opID, e.TS, e.Level, e.Kind, e.Message, e.FieldsJSON, opID)
	if err != nil {
		return fmt.Errorf("append event to operation %s: %w", opID, err)
	}
	return nil
}

// ListOperationEvents returns up to limit events of an operation with seq > after, in order.
func (q Q) ListOperationEvents(ctx context.Context, opID string, after int64, limit int) ([]OperationEvent, error) {
	rows, err := q.ex.QueryContext(ctx, qOperationEvents, opID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list events of operation %s: %w", opID, err)
	}
	defer rows.Close()
	out := []OperationEvent{}
	for rows.Next() {
		var e OperationEvent
		if err := rows.Scan(&e.Seq, &e.TS, &e.Level, &e.Kind, &e.Message, &e.FieldsJSON); err != nil {
			return nil, fmt.Errorf("list events of operation %s: %w", opID, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events of operation %s: %w", opID, err)
	}
	return out, nil
}

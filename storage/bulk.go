package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Bulk operation and item statuses. An operation is queued until the loop claims one of its
// items, running while any item is queued or running, then done; canceled when a user canceled
// it (its running items still finish).
const (
	BulkQueued   = "queued"
	BulkRunning  = "running"
	BulkDone     = "done"
	BulkCanceled = "canceled"

	BulkItemQueued   = "queued"
	BulkItemRunning  = "running"
	BulkItemSuccess  = "success"
	BulkItemFailed   = "failed"
	BulkItemCanceled = "canceled"
)

// ErrBulkCanceled is returned when failed items of a canceled operation are to be retried.
var ErrBulkCanceled = errors.New("bulk operation is canceled")

// BulkCounts are an operation's items by status.
type BulkCounts struct {
	Total, Queued, Running, Success, Failed, Canceled int64
}

// BulkOperation is a row of bulk_operations with its item counts.
type BulkOperation struct {
	ID              string
	Kind            string
	Status          string
	CreatedByUserID *int64
	SelectorJSON    string
	PayloadJSON     string
	CreatedAt       int64
	UpdatedAt       int64
	StartedAt       *int64
	EndedAt         *int64
	CanceledAt      *int64
	Counts          BulkCounts // read only
}

// BulkItem is a row of bulk_operation_items, with the agent's name.
type BulkItem struct {
	OpID          string
	AgentID       string
	AgentName     *string
	Status        string
	Attempts      int64
	CreatedAt     int64
	UpdatedAt     int64
	StartedAt     *int64
	EndedAt       *int64
	LastErrorKind *string
	LastError     *string
}

// ClaimedBulkItem is an item the loop took to work on, with what it needs to do so.
type ClaimedBulkItem struct {
	OpID        string
	Kind        string
	AgentID     string
	PayloadJSON string
	Attempts    int64 // including this one
}

// bulkOpColumns counts an operation's items with correlated subqueries, each a search of the
// items' primary key (op_id, …): no scan of either table. The unary + keeps SQLite off
// bulk_operation_items_status, which it otherwise picks for the status counts: that walks the
// items of that status of every operation, once per operation listed.
const bulkOpColumns = `o.id, o.kind, o.status, o.created_by_user_id, o.selector_json, o.payload_json,
	o.created_at, o.updated_at, o.started_at, o.ended_at, o.canceled_at,
	(SELECT COUNT(*) FROM bulk_operation_items i WHERE i.op_id = o.id),
	(SELECT COUNT(*) FROM bulk_operation_items i WHERE i.op_id = o.id AND +i.status = 'queued'),
	(SELECT COUNT(*) FROM bulk_operation_items i WHERE i.op_id = o.id AND +i.status = 'running'),
	(SELECT COUNT(*) FROM bulk_operation_items i WHERE i.op_id = o.id AND +i.status = 'success'),
	(SELECT COUNT(*) FROM bulk_operation_items i WHERE i.op_id = o.id AND +i.status = 'failed'),
	(SELECT COUNT(*) FROM bulk_operation_items i WHERE i.op_id = o.id AND +i.status = 'canceled')`

const (
	// Ties within a second go by insertion order (rowid), not by the random id.
	qListBulkOperations = `SELECT ` + bulkOpColumns + ` FROM bulk_operations o
		ORDER BY o.created_at DESC, o.rowid DESC LIMIT ?`
	qGetBulkOperation = `SELECT ` + bulkOpColumns + ` FROM bulk_operations o WHERE o.id = ?`
	qBulkItems        = `SELECT i.op_id, i.agent_id, a.name, i.status, i.attempts, i.created_at, i.updated_at,
		i.started_at, i.ended_at, i.last_error_kind, i.last_error
		FROM bulk_operation_items i LEFT JOIN agents a ON a.id = i.agent_id
		WHERE i.op_id = ? ORDER BY i.agent_id`
	// qQueuedBulkItems: oldest operation first, so one large operation does not starve behind
	// later ones and a later one does not overtake it.
	qQueuedBulkItems = `SELECT i.op_id, i.agent_id, o.kind, o.payload_json, i.attempts
		FROM bulk_operation_items i JOIN bulk_operations o ON o.id = i.op_id
		WHERE i.status = 'queued' AND o.status != 'canceled'
		ORDER BY o.created_at, o.rowid, i.agent_id LIMIT ?`
)

func scanBulkOperation(sc interface{ Scan(...any) error }) (BulkOperation, error) {
	var o BulkOperation
	c := &o.Counts
	err := sc.Scan(&o.ID, &o.Kind, &o.Status, &o.CreatedByUserID, &o.SelectorJSON, &o.PayloadJSON,
		&o.CreatedAt, &o.UpdatedAt, &o.StartedAt, &o.EndedAt, &o.CanceledAt,
		&c.Total, &c.Queued, &c.Running, &c.Success, &c.Failed, &c.Canceled)
	return o, err
}

// InsertBulkOperation stores a new operation (status queued) and one queued item per agent.
func (q Q) InsertBulkOperation(ctx context.Context, o BulkOperation, agentIDs []string) error {
	if _, err := q.ex.ExecContext(ctx, `INSERT INTO bulk_operations(id, kind, status, created_by_user_id,
		selector_json, payload_json, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)`,
		o.ID, o.Kind, BulkQueued, o.CreatedByUserID, o.SelectorJSON, o.PayloadJSON, o.CreatedAt, o.CreatedAt); err != nil {
		return fmt.Errorf("insert bulk operation %s: %w", o.ID, err)
	}
	for _, id := range agentIDs {
		if _, err := q.ex.ExecContext(ctx, `INSERT INTO bulk_operation_items(op_id, agent_id, status, attempts,
			created_at, updated_at) VALUES (?,?,?,0,?,?)`, o.ID, id, BulkItemQueued, o.CreatedAt, o.CreatedAt); err != nil {
			return fmt.Errorf("insert bulk operation %s item for agent %s: %w", o.ID, id, err)
		}
	}
	return nil
}

// ListBulkOperations returns the latest operations, newest first, with their counts.
func (q Q) ListBulkOperations(ctx context.Context, limit int) ([]BulkOperation, error) {
	rows, err := q.ex.QueryContext(ctx, qListBulkOperations, limit)
	if err != nil {
		return nil, fmt.Errorf("list bulk operations: %w", err)
	}
	defer rows.Close()
	var out []BulkOperation
	for rows.Next() {
		o, err := scanBulkOperation(rows)
		if err != nil {
			return nil, fmt.Errorf("list bulk operations: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list bulk operations: %w", err)
	}
	return out, nil
}

// GetBulkOperation returns an operation with its counts, or ErrNotFound.
func (q Q) GetBulkOperation(ctx context.Context, id string) (BulkOperation, error) {
	o, err := scanBulkOperation(q.ex.QueryRowContext(ctx, qGetBulkOperation, id))
	if err != nil {
		return o, fmt.Errorf("get bulk operation %s: %w", id, notFound(err))
	}
	return o, nil
}

// ListBulkItems returns an operation's items, by agent id.
func (q Q) ListBulkItems(ctx context.Context, opID string) ([]BulkItem, error) {
	rows, err := q.ex.QueryContext(ctx, qBulkItems, opID)
	if err != nil {
		return nil, fmt.Errorf("list items of bulk operation %s: %w", opID, err)
	}
	defer rows.Close()
	var out []BulkItem
	for rows.Next() {
		var it BulkItem
		if err := rows.Scan(&it.OpID, &it.AgentID, &it.AgentName, &it.Status, &it.Attempts, &it.CreatedAt,
			&it.UpdatedAt, &it.StartedAt, &it.EndedAt, &it.LastErrorKind, &it.LastError); err != nil {
			return nil, fmt.Errorf("list items of bulk operation %s: %w", opID, err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list items of bulk operation %s: %w", opID, err)
	}
	return out, nil
}

// CancelBulkOperation marks the operation canceled and its queued items canceled; running items
// finish. An operation already done or canceled is left as it is. ErrNotFound if absent.
func (q Q) CancelBulkOperation(ctx context.Context, id string, now int64) error {
	var status string
	if err := q.ex.QueryRowContext(ctx, `SELECT status FROM bulk_operations WHERE id = ?`, id).Scan(&status); err != nil {
		return fmt.Errorf("cancel bulk operation %s: %w", id, notFound(err))
	}
	if status == BulkDone || status == BulkCanceled {
		return nil
	}
	if _, err := q.ex.ExecContext(ctx, `UPDATE bulk_operations SET status = 'canceled',
		canceled_at = ?, updated_at = ? WHERE id = ?`, now, now, id); err != nil {
		return fmt.Errorf("cancel bulk operation %s: %w", id, err)
	}
	if _, err := q.ex.ExecContext(ctx, `UPDATE bulk_operation_items SET status = 'canceled',
		ended_at = COALESCE(ended_at, ?), updated_at = ? WHERE op_id = ? AND status = 'queued'`, now, now, id); err != nil {
		return fmt.Errorf("cancel items of bulk operation %s: %w", id, err)
	}
	return q.finishBulkIfDone(ctx, id, now)
}

// RetryFailedBulkItems queues the operation's failed items again (errors cleared, attempts
// kept) and the operation with them; other items are untouched. It returns how many were
// queued. ErrNotFound if absent, ErrBulkCanceled if the operation was canceled.
func (q Q) RetryFailedBulkItems(ctx context.Context, id string, now int64) (int64, error) {
	var status string
	if err := q.ex.QueryRowContext(ctx, `SELECT status FROM bulk_operations WHERE id = ?`, id).Scan(&status); err != nil {
		return 0, fmt.Errorf("retry bulk operation %s: %w", id, notFound(err))
	}
	if status == BulkCanceled {
		return 0, fmt.Errorf("retry bulk operation %s: %w", id, ErrBulkCanceled)
	}
	res, err := q.ex.ExecContext(ctx, `UPDATE bulk_operation_items SET status = 'queued', updated_at = ?,
		started_at = NULL, ended_at = NULL, last_error_kind = NULL, last_error = NULL
		WHERE op_id = ? AND status = 'failed'`, now, id)
	if err != nil {
		return 0, fmt.Errorf("retry failed items of bulk operation %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("retry failed items of bulk operation %s: %w", id, err)
	}
	if n > 0 {
		if _, err := q.ex.ExecContext(ctx, `UPDATE bulk_operations SET status = 'queued', ended_at = NULL,
			updated_at = ? WHERE id = ?`, now, id); err != nil {
			return 0, fmt.Errorf("retry bulk operation %s: %w", id, err)
		}
	}
	return n, nil
}

// ClaimBulkItems marks up to limit queued items of operations not canceled running (one more
// attempt each) and returns them, with their operations marked running.
func (q Q) ClaimBulkItems(ctx context.Context, limit int, now int64) ([]ClaimedBulkItem, error) {
	rows, err := q.ex.QueryContext(ctx, qQueuedBulkItems, limit)
	if err != nil {
		return nil, fmt.Errorf("find queued bulk items: %w", err)
	}
	var items []ClaimedBulkItem
	for rows.Next() {
		var it ClaimedBulkItem
		if err := rows.Scan(&it.OpID, &it.AgentID, &it.Kind, &it.PayloadJSON, &it.Attempts); err != nil {
			rows.Close()
			return nil, fmt.Errorf("find queued bulk items: %w", err)
		}
		it.Attempts++
		items = append(items, it)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find queued bulk items: %w", err)
	}
	for _, it := range items {
		if _, err := q.ex.ExecContext(ctx, `UPDATE bulk_operation_items SET status = 'running',
			attempts = attempts + 1, started_at = ?, ended_at = NULL, updated_at = ?
			WHERE op_id = ? AND agent_id = ? AND status = 'queued'`, now, now, it.OpID, it.AgentID); err != nil {
			return nil, fmt.Errorf("claim bulk item %s/%s: %w", it.OpID, it.AgentID, err)
		}
		if _, err := q.ex.ExecContext(ctx, `UPDATE bulk_operations SET status = 'running',
			started_at = COALESCE(started_at, ?), updated_at = ? WHERE id = ? AND status = 'queued'`, now, now, it.OpID); err != nil {
			return nil, fmt.Errorf("start bulk operation %s: %w", it.OpID, err)
		}
	}
	return items, nil
}

// FinishBulkItem records a running item's end: success (errKind/errMsg then carry a note, or
// nil) or failed. It ends the operation when no item is left queued or running. An item that is
// not running any more is left alone.
func (q Q) FinishBulkItem(ctx context.Context, opID, agentID, status string, errKind, errMsg *string, now int64) error {
	if status != BulkItemSuccess && status != BulkItemFailed {
		return fmt.Errorf("finish bulk item %s/%s: bad status %q", opID, agentID, status)
	}
	if _, err := q.ex.ExecContext(ctx, `UPDATE bulk_operation_items SET status = ?, ended_at = ?, updated_at = ?,
		last_error_kind = ?, last_error = ? WHERE op_id = ? AND agent_id = ? AND status = 'running'`,
		status, now, now, errKind, errMsg, opID, agentID); err != nil {
		return fmt.Errorf("finish bulk item %s/%s: %w", opID, agentID, err)
	}
	if _, err := q.ex.ExecContext(ctx, `UPDATE bulk_operations SET updated_at = ? WHERE id = ?`, now, opID); err != nil {
		return fmt.Errorf("touch bulk operation %s: %w", opID, err)
	}
	return q.finishBulkIfDone(ctx, opID, now)
}

// finishBulkIfDone ends the operation (done, or canceled with its end time) once none of its
// items is queued or running.
func (q Q) finishBulkIfDone(ctx context.Context, id string, now int64) error {
	_, err := q.ex.ExecContext(ctx, `UPDATE bulk_operations
		SET status = CASE WHEN status = 'canceled' THEN 'canceled' ELSE 'done' END,
			ended_at = COALESCE(ended_at, ?), updated_at = ?
		WHERE id = ? AND NOT EXISTS (SELECT 1 FROM bulk_operation_items
			WHERE op_id = ? AND status IN ('queued', 'running'))`, now, now, id, id)
	if err != nil {
		return fmt.Errorf("end bulk operation %s: %w", id, err)
	}
	return nil
}

// RequeueRunningBulkItems puts the items a stopped Hub left running back in the queue (the kinds'
// work is safe to repeat), and returns how many. Run it before the loop starts claiming.
func (q Q) RequeueRunningBulkItems(ctx context.Context, now int64) (int64, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE bulk_operation_items SET status = 'queued', updated_at = ?
		WHERE status = 'running'`, now)
	if err != nil {
		return 0, fmt.Errorf("requeue interrupted bulk items: %w", err)
	}
	return res.RowsAffected()
}

// AgentIDsByLabels returns the agents (revoked ones included) carrying every label (anyOf false)
// or at least one (anyOf true), by id.
func (q Q) AgentIDsByLabels(ctx context.Context, labels []string, anyOf bool) ([]string, error) {
	if len(labels) == 0 {
		return nil, nil
	}
	marks := strings.TrimSuffix(strings.Repeat("?,", len(labels)), ",")
	args := make([]any, 0, len(labels)+1)
	for _, l := range labels {
		args = append(args, l)
	}
	query := `SELECT agent_id FROM agent_labels WHERE label IN (` + marks + `) GROUP BY agent_id`
	if !anyOf {
		query += ` HAVING COUNT(DISTINCT label) = ?`
		args = append(args, len(labels))
	}
	return q.queryStrings(ctx, "agents by labels", query+` ORDER BY agent_id`, args...)
}

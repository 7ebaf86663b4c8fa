package storage

import (
	"context"
	"encoding/json"
	"fmt"
)

// Agent task kinds and statuses.
const (
	AgentTaskBackup  = "backup"
	AgentTaskRestore = "restore"
	// AgentTaskVerify is a restore drill the agent runs on a snapshot in its own directory; like a
	// restore, its id is the operation id and it reports with operation_event/operation_result.
	AgentTaskVerify = "verify"

	AgentTaskSent      = "sent"      // stored; sent, or to be sent when the agent connects
	AgentTaskAcked     = "acked"     // the agent has durably recorded it
	AgentTaskCompleted = "completed" // its result has been applied
)

// AgentTask is a row of agent_tasks: a task the Hub owes an agent until the agent's result has
// been applied. PayloadJSON never holds credentials.
type AgentTask struct {
	ID                string
	AgentID           string
	RunID             string
	Kind              string
	Status            string
	PayloadJSON       string
	SendCount         int64
	LastSentAt        *int64
	AckedAt           *int64
	CompletedAt       *int64
	ResultJSON        *string
	Error             *string
	CancelRequestedAt *int64
	LastEventSeq      int64
	CreatedAt         int64
	UpdatedAt         int64
}

const agentTaskColumns = `id, agent_id, run_id, kind, status, payload_json, send_count, last_sent_at, acked_at,
	completed_at, result_json, error, cancel_requested_at, last_event_seq, created_at, updated_at`

const (
	// qOpenAgentTasks pages through an agent's open tasks, oldest first (resend on connect).
	qOpenAgentTasks = `SELECT ` + agentTaskColumns + ` FROM agent_tasks
		WHERE agent_id = ? AND completed_at IS NULL AND (created_at, id) > (?, ?) ORDER BY created_at, id LIMIT ?`
	// qUnackedAgentTasks: open tasks of the given agents (a JSON array of ids) sent at or before a
	// cutoff and never acknowledged. Only connected agents are asked about: an offline agent's
	// tasks are re-sent when it connects, and must not fill the limit ahead of the tasks of
	// agents that can be re-sent to now.
	qUnackedAgentTasks = `SELECT ` + agentTaskColumns + ` FROM agent_tasks
		WHERE agent_id IN (SELECT value FROM json_each(?)) AND completed_at IS NULL AND acked_at IS NULL
			AND last_sent_at <= ? ORDER BY last_sent_at LIMIT ?`
	// qAgentsOwingTasks: agents with open tasks and when they were last heard (agent timeout).
	qAgentsOwingTasks = `SELECT a.id, a.last_seen_at FROM agents a
		WHERE a.id IN (SELECT agent_id FROM agent_tasks WHERE completed_at IS NULL)`
)

func scanAgentTask(sc interface{ Scan(...any) error }) (AgentTask, error) {
	var t AgentTask
	err := sc.Scan(&t.ID, &t.AgentID, &t.RunID, &t.Kind, &t.Status, &t.PayloadJSON, &t.SendCount, &t.LastSentAt,
		&t.AckedAt, &t.CompletedAt, &t.ResultJSON, &t.Error, &t.CancelRequestedAt, &t.LastEventSeq, &t.CreatedAt, &t.UpdatedAt)
	return t, err
}

// InsertAgentTask stores a task before it is first sent.
func (q Q) InsertAgentTask(ctx context.Context, t AgentTask) error {
	if t.Status == "" {
		t.Status = AgentTaskSent
	}
	_, err := q.ex.ExecContext(ctx, `INSERT INTO agent_tasks(`+agentTaskColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		t.ID, t.AgentID, t.RunID, t.Kind, t.Status, t.PayloadJSON, t.SendCount, t.LastSentAt, t.AckedAt,
		t.CompletedAt, t.ResultJSON, t.Error, t.CancelRequestedAt, t.LastEventSeq, t.CreatedAt, t.UpdatedAt)
	if err != nil {
		return fmt.Errorf("insert agent task %s: %w", t.ID, err)
	}
	return nil
}

// GetAgentTask returns a task or ErrNotFound.
func (q Q) GetAgentTask(ctx context.Context, id string) (AgentTask, error) {
	t, err := scanAgentTask(q.ex.QueryRowContext(ctx, `SELECT `+agentTaskColumns+` FROM agent_tasks WHERE id = ?`, id))
	if err != nil {
		return AgentTask{}, fmt.Errorf("get agent task %s: %w", id, notFound(err))
	}
	return t, nil
}

// ListOpenAgentTasks returns up to limit open tasks of an agent after the (createdAt, id) key,
// oldest first. Start with (0, "").
func (q Q) ListOpenAgentTasks(ctx context.Context, agentID string, afterCreated int64, afterID string, limit int) ([]AgentTask, error) {
	return q.listAgentTasks(ctx, "list open tasks of agent "+agentID, qOpenAgentTasks, agentID, afterCreated, afterID, limit)
}

// ListUnackedAgentTasks returns open, unacknowledged tasks of the given agents last sent at or
// before cutoff, longest unacknowledged first.
func (q Q) ListUnackedAgentTasks(ctx context.Context, agentIDs []string, cutoff int64, limit int) ([]AgentTask, error) {
	if len(agentIDs) == 0 {
		return nil, nil
	}
	ids, err := json.Marshal(agentIDs)
	if err != nil {
		return nil, fmt.Errorf("list unacknowledged agent tasks: %w", err)
	}
	return q.listAgentTasks(ctx, "list unacknowledged agent tasks", qUnackedAgentTasks, string(ids), cutoff, limit)
}

func (q Q) listAgentTasks(ctx context.Context, what, query string, args ...any) ([]AgentTask, error) {
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []AgentTask
	for rows.Next() {
		t, err := scanAgentTask(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// MarkAgentTaskSent counts one more send of an open task.
func (q Q) MarkAgentTaskSent(ctx context.Context, id string, now int64) error {
	if _, err := q.ex.ExecContext(ctx, `UPDATE agent_tasks SET send_count = send_count + 1, last_sent_at = ?, updated_at = ?
		WHERE id = ? AND completed_at IS NULL`, now, now, id); err != nil {
		return fmt.Errorf("mark agent task %s sent: %w", id, err)
	}
	return nil
}

// AckAgentTask records the agent's ACK: the first acked_at is kept, and only an open task owned
// by agentID changes. It reports whether the row changed.
func (q Q) AckAgentTask(ctx context.Context, id, agentID string, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE agent_tasks SET status = ?, acked_at = ?, updated_at = ?
		WHERE id = ? AND agent_id = ? AND completed_at IS NULL AND acked_at IS NULL`, AgentTaskAcked, now, now, id, agentID)
	if err != nil {
		return false, fmt.Errorf("ack agent task %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// CompleteAgentTask closes an open task with its result. It reports false when the task was
// already complete (or does not exist): a result is recorded once.
func (q Q) CompleteAgentTask(ctx context.Context, id string, resultJSON, errText *string, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE agent_tasks SET status = ?, completed_at = ?, result_json = ?, error = ?, updated_at = ?
		WHERE id = ? AND completed_at IS NULL`, AgentTaskCompleted, now, resultJSON, errText, now, id)
	if err != nil {
		return false, fmt.Errorf("complete agent task %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// RequestAgentTaskCancel stamps the cancel intent of an open task once. It reports whether an
// open task exists.
func (q Q) RequestAgentTaskCancel(ctx context.Context, id string, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE agent_tasks SET cancel_requested_at = COALESCE(cancel_requested_at, ?), updated_at = ?
		WHERE id = ? AND completed_at IS NULL`, now, now, id)
	if err != nil {
		return false, fmt.Errorf("request cancel of agent task %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// SetAgentTaskEventSeq raises the mark of the last applied agent event sequence.
func (q Q) SetAgentTaskEventSeq(ctx context.Context, id string, seq int64) error {
	if _, err := q.ex.ExecContext(ctx, `UPDATE agent_tasks SET last_event_seq = ? WHERE id = ? AND last_event_seq < ?`, seq, id, seq); err != nil {
		return fmt.Errorf("record event sequence of agent task %s: %w", id, err)
	}
	return nil
}

// AgentOwing is an agent with open tasks, and when it was last heard.
type AgentOwing struct {
	AgentID    string
	LastSeenAt *int64
}

// ListAgentsOwingTasks returns the agents that have open tasks.
func (q Q) ListAgentsOwingTasks(ctx context.Context) ([]AgentOwing, error) {
	rows, err := q.ex.QueryContext(ctx, qAgentsOwingTasks)
	if err != nil {
		return nil, fmt.Errorf("list agents with open tasks: %w", err)
	}
	defer rows.Close()
	var out []AgentOwing
	for rows.Next() {
		var a AgentOwing
		if err := rows.Scan(&a.AgentID, &a.LastSeenAt); err != nil {
			return nil, fmt.Errorf("list agents with open tasks: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list agents with open tasks: %w", err)
	}
	return out, nil
}

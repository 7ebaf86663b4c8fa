package storage

import (
	"context"
	"fmt"
)

// RunEvent is one entry of a run's append-only event log.
type RunEvent struct {
	RunID      string  `json:"run_id"`
	Seq        int64   `json:"seq"`
	TS         int64   `json:"ts"`
	Level      string  `json:"level"`
	Kind       string  `json:"kind"`
	Message    string  `json:"message"`
	FieldsJSON *string `json:"-"`
}

const (
	qMaxEventSeq     = `SELECT COALESCE(MAX(seq), 0) FROM run_events WHERE run_id = ?`
	qListEventsAfter = `SELECT run_id, seq, ts, level, kind, message, fields_json FROM run_events
		WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?`
)

// AppendRunEvents appends events to their runs' logs, giving each the next sequence number of its
// run; Seq is filled in on the slice. Call it inside Write so that sequence numbers are assigned
// and inserted atomically; several runs' events may be appended in one call (group commit).
func (q Q) AppendRunEvents(ctx context.Context, events []RunEvent) error {
	next := map[string]int64{}
	for i := range events {
		e := &events[i]
		seq, ok := next[e.RunID]
		if !ok {
			if err := q.ex.QueryRowContext(ctx, qMaxEventSeq, e.RunID).Scan(&seq); err != nil {
				return fmt.Errorf("append event to run %s: read sequence: %w", e.RunID, err)
			}
		}
		seq++
		next[e.RunID] = seq
		e.Seq = seq
		if _, err := q.ex.ExecContext(ctx, `INSERT INTO run_events(run_id, seq, ts, level, kind, message, fields_json)
			VALUES (?,?,?,?,?,?,?)`, e.RunID, e.Seq, e.TS, e.Level, e.Kind, e.Message, e.FieldsJSON); err != nil {
			return fmt.Errorf("append event to run %s: %w", e.RunID, err)
		}
	}
	return nil
}

// ListRunEvents returns up to limit events of a run with seq > after, in order.
func (q Q) ListRunEvents(ctx context.Context, runID string, after int64, limit int) ([]RunEvent, error) {
	rows, err := q.ex.QueryContext(ctx, qListEventsAfter, runID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list events of run %s: %w", runID, err)
	}
	defer rows.Close()
	var out []RunEvent
	for rows.Next() {
		var e RunEvent
		if err := rows.Scan(&e.RunID, &e.Seq, &e.TS, &e.Level, &e.Kind, &e.Message, &e.FieldsJSON); err != nil {
			return nil, fmt.Errorf("list events of run %s: %w", runID, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events of run %s: %w", runID, err)
	}
	return out, nil
}

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// EventWindow selects a page of a run's events for the event console: those of the given levels
// and kinds (empty: any), strictly after AfterSeq or strictly before BeforeSeq (at most one is
// non-zero; both zero is the newest page), at most Limit of them.
type EventWindow struct {
	Levels, Kinds       []string
	AfterSeq, BeforeSeq int64
	// FromSeq starts the page at that seq (inclusive), read forwards: a page anchored on an
	// event. Used only without AfterSeq and BeforeSeq.
	FromSeq int64
	// Query matches, case-insensitively, part of the message or of the fields' JSON.
	Query string
	Limit int
}

// EventPage is one page of EventWindow, in ascending seq, with whether matching events lie
// before and after it.
type EventPage struct {
	Events             []RunEvent
	HasOlder, HasNewer bool
}

// filterClause is the WHERE of a run's events under w's level and kind filters.
func (w EventWindow) filterClause(runID string) (string, []any) {
	where := "run_id = ?"
	args := []any{runID}
	add := func(col string, vals []string) {
		if len(vals) == 0 {
			return
		}
		where += " AND " + col + " IN (?" + strings.Repeat(",?", len(vals)-1) + ")"
		for _, v := range vals {
			args = append(args, v)
		}
	}
	add("level", w.Levels)
	add("kind", w.Kinds)
	if w.Query != "" {
		// instr, not LIKE: the text is the user's, and % or _ in it must match themselves.
		where += " AND (instr(lower(message), ?) > 0 OR instr(lower(COALESCE(fields_json, '')), ?) > 0)"
		t := strings.ToLower(w.Query)
		args = append(args, t, t)
	}
	return where, args
}

// ListRunEventWindow returns the page of a run's events that w selects. Paging goes by seq (the
// primary key), so a page is stable while the run appends more.
func (q Q) ListRunEventWindow(ctx context.Context, runID string, w EventWindow) (EventPage, error) {
	where, args := w.filterClause(runID)
	var query string
	desc := w.AfterSeq == 0 && (w.FromSeq == 0 || w.BeforeSeq > 0) // the newest page, or the page before a cursor: read backwards
	switch {
	case w.FromSeq > 0 && w.BeforeSeq == 0:
		query = where + " AND seq >= ? ORDER BY seq LIMIT ?"
		args = append(args, w.FromSeq, w.Limit+1)
	case w.AfterSeq > 0:
		query = where + " AND seq > ? ORDER BY seq LIMIT ?"
		args = append(args, w.AfterSeq, w.Limit+1)
	case w.BeforeSeq > 0:
		query = where + " AND seq < ? ORDER BY seq DESC LIMIT ?"
		args = append(args, w.BeforeSeq, w.Limit+1)
	default:
		query = where + " ORDER BY seq DESC LIMIT ?"
		args = append(args, w.Limit+1)
	}
	rows, err := q.ex.QueryContext(ctx, `SELECT run_id, seq, ts, level, kind, message, fields_json FROM run_events WHERE `+query, args...)
	if err != nil {
		return EventPage{}, fmt.Errorf("list event window of run %s: %w", runID, err)
	}
	defer rows.Close()
	var page EventPage
	for rows.Next() {
		var e RunEvent
		if err := rows.Scan(&e.RunID, &e.Seq, &e.TS, &e.Level, &e.Kind, &e.Message, &e.FieldsJSON); err != nil {
			return EventPage{}, fmt.Errorf("list event window of run %s: %w", runID, err)
		}
		page.Events = append(page.Events, e)
	}
	if err := rows.Err(); err != nil {
		return EventPage{}, fmt.Errorf("list event window of run %s: %w", runID, err)
	}
	more := len(page.Events) > w.Limit
	if more {
		page.Events = page.Events[:w.Limit]
	}
	if desc {
		slices.Reverse(page.Events)
		page.HasOlder = more
	} else {
		page.HasNewer = more
	}
	// The other direction: is there a matching event beyond the page's edge (or the cursor)?
	exists := func(cond string, seq int64) (bool, error) {
		where, args := w.filterClause(runID)
		var one int
		err := q.ex.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM run_events WHERE `+where+` AND `+cond+`)`,
			append(args, seq)...).Scan(&one)
		return one == 1, err
	}
	if desc && w.BeforeSeq > 0 {
		edge := w.BeforeSeq - 1
		if n := len(page.Events); n > 0 {
			edge = page.Events[n-1].Seq
		}
		if page.HasNewer, err = exists("seq > ?", edge); err != nil {
			return EventPage{}, fmt.Errorf("list event window of run %s: %w", runID, err)
		}
	}
	if !desc {
		edge := w.AfterSeq + 1
		if w.AfterSeq == 0 {
			edge = w.FromSeq
		}
		if len(page.Events) > 0 {
			edge = page.Events[0].Seq
		}
		if page.HasOlder, err = exists("seq < ?", edge); err != nil {
			return EventPage{}, fmt.Errorf("list event window of run %s: %w", runID, err)
		}
	}
	return page, nil
}

// EventStats summarises a run's event log: how many events of each level, the distinct kinds,
// and the highest seq.
type EventStats struct {
	Total   int64
	MaxSeq  int64
	ByLevel map[string]int64
	Kinds   []string
}

// RunEventStats reads the summary of a run's event log, in one pass over the run's events.
func (q Q) RunEventStats(ctx context.Context, runID string) (EventStats, error) {
	st := EventStats{ByLevel: map[string]int64{}, Kinds: []string{}}
	rows, err := q.ex.QueryContext(ctx, `SELECT level, kind, COUNT(*), MAX(seq) FROM run_events WHERE run_id = ? GROUP BY level, kind`, runID)
	if err != nil {
		return st, fmt.Errorf("summarise events of run %s: %w", runID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var level, kind string
		var n, maxSeq int64
		if err := rows.Scan(&level, &kind, &n, &maxSeq); err != nil {
			return st, fmt.Errorf("summarise events of run %s: %w", runID, err)
		}
		st.ByLevel[level] += n
		st.Total += n
		st.MaxSeq = max(st.MaxSeq, maxSeq)
		st.Kinds = append(st.Kinds, kind)
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("summarise events of run %s: %w", runID, err)
	}
	// Byte order, as SQLite's ORDER BY kind gave them.
	slices.Sort(st.Kinds)
	st.Kinds = slices.Compact(st.Kinds)
	return st, nil
}

// FirstErrorEvent is a run's first event that reports a failure: level error, or a failed,
// rejected or canceled event. Nil when there is none.
func (q Q) FirstErrorEvent(ctx context.Context, runID string) (*RunEvent, error) {
	var e RunEvent
	err := q.ex.QueryRowContext(ctx, `SELECT run_id, seq, ts, level, kind, message, fields_json FROM run_events
		WHERE run_id = ? AND (lower(level) = 'error' OR kind IN ('failed', 'rejected', 'canceled')) ORDER BY seq LIMIT 1`, runID).
		Scan(&e.RunID, &e.Seq, &e.TS, &e.Level, &e.Kind, &e.Message, &e.FieldsJSON)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("first error event of run %s: %w", runID, err)
	}
	return &e, nil
}

// RunRelatedCounts counts the operations about a run (restores, verifies) and its stored
// snapshots (0 or 1).
func (q Q) RunRelatedCounts(ctx context.Context, runID string) (operations, artifacts int64, err error) {
	err = q.ex.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM operations WHERE subject_kind = 'run' AND subject_id = ?),
		(SELECT COUNT(*) FROM run_artifacts WHERE run_id = ?)`, runID, runID).Scan(&operations, &artifacts)
	if err != nil {
		return 0, 0, fmt.Errorf("related counts of run %s: %w", runID, err)
	}
	return operations, artifacts, nil
}

// JobOutcomes are when a job's latest successful and latest failed runs ended (nil: none, or
// a run that recorded no end) and whether it ever succeeded. They come from run_totals, so they
// cost a row per job and status whatever the run history, and outlive pruned runs.
type JobOutcomes struct {
	LatestSuccessAt, LatestFailureAt *int64
	EverSucceeded                    bool
}

// JobOutcomesOf returns the outcomes of the jobs ids (at most a few hundred); a job without
// ended runs has no entry.
func (q Q) JobOutcomesOf(ctx context.Context, ids []string) (map[string]JobOutcomes, error) {
	out := map[string]JobOutcomes{}
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := q.ex.QueryContext(ctx, `SELECT job_id, MAX(CASE WHEN status = 'success' THEN last_ended_at END),
		MAX(CASE WHEN status = 'failed' THEN last_ended_at END), COALESCE(SUM(CASE WHEN status = 'success' THEN runs END), 0) > 0
		FROM run_totals WHERE job_id IN (?`+strings.Repeat(",?", len(ids)-1)+`)
		GROUP BY job_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("job outcomes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var o JobOutcomes
		if err := rows.Scan(&id, &o.LatestSuccessAt, &o.LatestFailureAt, &o.EverSucceeded); err != nil {
			return nil, fmt.Errorf("job outcomes: %w", err)
		}
		out[id] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("job outcomes: %w", err)
	}
	return out, nil
}

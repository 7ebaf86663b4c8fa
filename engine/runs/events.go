package runs

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/bastion-backup/bastion/storage"
)

// Event levels.
const (
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// AppendEvents appends events to a run's log in order and publishes them once committed. Appends
// of many runs at once share transactions (group commit). It returns when the events are durable.
func (s *Service) AppendEvents(ctx context.Context, runID string, events ...Event) error {
	if len(events) == 0 {
		return nil
	}
	rows, err := s.toRows(runID, events)
	if err != nil {
		return err
	}
	if err := s.app.submit(ctx, &appendReq{events: rows}); err != nil {
		return fmt.Errorf("append events to run %s: %w", runID, err)
	}
	return nil
}

func (s *Service) toRows(runID string, events []Event) ([]storage.RunEvent, error) {
	ts := s.clock.Now().Unix()
	rows := make([]storage.RunEvent, len(events))
	for i, ev := range events {
		row, err := eventRow(runID, ts, ev)
		if err != nil {
			return nil, err
		}
		rows[i] = row
	}
	return rows, nil
}

func eventRow(runID string, ts int64, ev Event) (storage.RunEvent, error) {
	level := ev.Level
	if level == "" {
		level = LevelInfo
	}
	row := storage.RunEvent{RunID: runID, TS: ts, Level: level, Kind: ev.Kind, Message: ev.Message}
	if ev.Fields != nil {
		var raw []byte
		switch f := ev.Fields.(type) {
		case json.RawMessage:
			raw = f
		default:
			var err error
			if raw, err = json.Marshal(f); err != nil {
				return row, fmt.Errorf("encode fields of %s event of run %s: %w", ev.Kind, runID, err)
			}
		}
		row.FieldsJSON = ptr(string(raw))
	}
	return row, nil
}

// runEvents is the EventSink of one run.
type runEvents struct {
	s     *Service
	runID string
}

func (e runEvents) Append(ctx context.Context, events ...Event) error {
	return e.s.AppendEvents(ctx, e.runID, events...)
}

package testtool

import "sync"

// Event is one event an Events recorder received.
type Event struct {
	Level, Kind, Message string
	Fields               map[string]any
}

// Events records what a backup or restore emits (it serves as backup.EventSink and
// restore.EventSink). The zero value is ready to use; it is safe for concurrent use.
type Events struct {
	mu   sync.Mutex
	list []Event
}

// Emit records one event.
func (e *Events) Emit(level, kind, msg string, fields map[string]any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, Event{level, kind, msg, fields})
}

// Find returns the first event of kind, or nil.
func (e *Events) Find(kind string) *Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.list {
		if ev.Kind == kind {
			return &ev
		}
	}
	return nil
}

// Kinds lists the kinds of the events in the order they came.
func (e *Events) Kinds() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.list {
		out = append(out, ev.Kind)
	}
	return out
}

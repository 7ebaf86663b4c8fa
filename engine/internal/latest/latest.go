// Package latest hands the newest of a stream of values to a slow consumer from its own
// goroutine: a progress reporter calls Set under its lock many times a second, and only the
// newest value is ever worth writing to the database.
package latest

import (
	"context"
	"sync"
)

// Writer writes the newest value set, skipping values overtaken before they were written.
type Writer struct {
	write func(ctx context.Context, v []byte)
	ctx   context.Context

	mu      sync.Mutex
	pending []byte
	closed  bool
	wake    chan struct{}
	done    chan struct{}
}

// Start runs a writer whose values go to write; write's errors are its own business (log them).
// ctx bounds the writes.
func Start(ctx context.Context, write func(ctx context.Context, v []byte)) *Writer {
	w := &Writer{write: write, ctx: ctx, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

// Set replaces the pending value; it never blocks. Values set after Close are dropped.
func (w *Writer) Set(v []byte) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.pending = v
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Close writes the last pending value, if any, and waits for the writer goroutine to end.
func (w *Writer) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return
	}
	w.closed = true
	w.mu.Unlock()
	close(w.wake)
	<-w.done
}

func (w *Writer) run() {
	defer close(w.done)
	for range w.wake {
		w.flush()
	}
	w.flush()
}

func (w *Writer) flush() {
	w.mu.Lock()
	v := w.pending
	w.pending = nil
	w.mu.Unlock()
	if v != nil {
		w.write(w.ctx, v)
	}
}

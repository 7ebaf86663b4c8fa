package backup

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
)

// gatedWriter blocks every Write until its context ends or a token arrives.
type gatedWriter struct {
	ctx    context.Context
	tokens chan struct{}
	mu     sync.Mutex
	got    bytes.Buffer
	err    error // returned by every Write once set
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	select {
	case <-g.tokens:
	case <-g.ctx.Done():
		return 0, context.Cause(g.ctx)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return 0, g.err
	}
	return g.got.Write(p)
}

func TestHandoffWriterKeepsOrderAndBoundsWhatItHolds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := &gatedWriter{ctx: ctx, tokens: make(chan struct{})}
	h := newHandoffWriter(g, cancel)
	want := bytes.Repeat([]byte("0123456789abcdef"), handoffChunk/16*(handoffDepth+4))
	done := make(chan error, 1)
	go func() {
		_, err := h.Write(want)
		done <- err
	}()
	// The writer is blocked: the handoff takes the chunk in progress plus handoffDepth queued,
	// and then Write must wait rather than buffer everything.
	for len(h.chunks) < handoffDepth {
		runtime.Gosched()
	}
	select {
	case err := <-done:
		t.Fatalf("Write of %d chunks returned (%v) while its writer took none", handoffDepth+4, err)
	default:
	}
	go func() {
		for {
			select {
			case g.tokens <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.got.Bytes(), want) {
		t.Fatal("the writer got other bytes, or in another order")
	}
}

func TestHandoffWriterReturnsTheWritersError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	boom := errors.New("disk full")
	g := &gatedWriter{ctx: ctx, tokens: make(chan struct{}, 1000), err: boom}
	for range 1000 {
		g.tokens <- struct{}{}
	}
	h := newHandoffWriter(g, cancel)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = h.Write(make([]byte, handoffChunk))
	}
	if !errors.Is(err, boom) {
		t.Fatalf("Write error %v, want %v", err, boom)
	}
	if err := h.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close error %v, want %v", err, boom)
	}
}

// A writer blocked for good (an upload nobody releases) must not hold up abort: abort cancels it.
func TestHandoffWriterAbortCancelsABlockedWriter(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	g := &gatedWriter{ctx: ctx, tokens: make(chan struct{})}
	h := newHandoffWriter(g, cancel)
	if _, err := h.Write([]byte("never written")); err != nil {
		t.Fatal(err)
	}
	h.abort() // returns only once the goroutine has ended, so it would hang without cancel
	if ctx.Err() == nil {
		t.Fatal("abort did not cancel the writer's context")
	}
	h.abort() // a second abort is harmless
}

package agentsock

import (
	"context"
	"sync"
)

// outbox is a bounded FIFO of encoded frames for one connection. It allocates as it fills rather
// than up front: an idle agent's outbox costs a few words, not 512 slots.
type outbox struct {
	mu    sync.Mutex
	q     [][]byte
	limit int
	ready chan struct{} // cap 1: something was queued
	space chan struct{} // cap 1: something was taken
}

func newOutbox(limit int) *outbox {
	return &outbox{limit: limit, ready: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push queues b; false when the outbox is full.
func (o *outbox) push(b []byte) bool {
	o.mu.Lock()
	if len(o.q) >= o.limit {
		o.mu.Unlock()
		return false
	}
	o.q = append(o.q, b)
	o.mu.Unlock()
	signal(o.ready)
	return true
}

// pushWait queues b, waiting for room until ctx ends.
func (o *outbox) pushWait(ctx context.Context, b []byte) error {
	for !o.push(b) {
		select {
		case <-o.space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// pop takes the oldest frame, waiting until there is one or ctx ends.
func (o *outbox) pop(ctx context.Context) ([]byte, error) {
	for {
		o.mu.Lock()
		if len(o.q) > 0 {
			b := o.q[0]
			o.q[0] = nil
			o.q = o.q[1:]
			if len(o.q) == 0 {
				o.q = nil // give the backing array back once drained
			}
			o.mu.Unlock()
			signal(o.space)
			return b, nil
		}
		o.mu.Unlock()
		select {
		case <-o.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

package runs

import (
	"context"
	"sync"

	"github.com/bastion-backup/bastion/storage"
)

// maxBatchRows bounds one group commit, so that a flood of events never holds the writer
// connection long enough to delay a user's request noticeably.
const maxBatchRows = 512

// appender group-commits run events and progress writes: one goroutine takes the first pending
// request, adds whatever else is already waiting (without waiting for more), and writes them all
// in one transaction. When uncontended a request is committed alone and at once, so batching adds
// no latency; under load many runs share one commit instead of queueing for one commit each.
type appender struct {
	db  *storage.DB
	bus *Bus
	ch  chan *appendReq

	once    sync.Once
	started chan struct{}
	stopped chan struct{}
}

type appendReq struct {
	events   []storage.RunEvent
	progress *progressWrite
	done     chan error
}

type progressWrite struct {
	runID string
	json  string
}

func (r *appendReq) rows() int {
	n := len(r.events)
	if r.progress != nil {
		n++
	}
	return n
}

func newAppender(db *storage.DB, bus *Bus) *appender {
	return &appender{db: db, bus: bus, ch: make(chan *appendReq), started: make(chan struct{}), stopped: make(chan struct{})}
}

// submit writes req durably and publishes its events, through the writer goroutine when it runs
// and directly otherwise (before Run, after shutdown).
func (a *appender) submit(ctx context.Context, req *appendReq) error {
	req.done = make(chan error, 1)
	select {
	case <-a.started:
	default:
		return a.commitAlone(ctx, req)
	}
	select {
	case a.ch <- req:
	case <-a.stopped:
		return a.commitAlone(ctx, req)
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-req.done // an accepted request is always answered
}

// run is the writer goroutine; it returns when ctx ends. Requests it has accepted are committed
// even then.
func (a *appender) run(ctx context.Context) {
	a.once.Do(func() { close(a.started) })
	defer close(a.stopped)
	wctx := context.WithoutCancel(ctx)
	batch := make([]*appendReq, 0, 64)
	for {
		var first *appendReq
		select {
		case <-ctx.Done():
			return
		case first = <-a.ch:
		}
		batch = append(batch[:0], first)
		n := first.rows()
	fill:
		for n < maxBatchRows {
			select {
			case r := <-a.ch:
				batch = append(batch, r)
				n += r.rows()
			default:
				break fill
			}
		}
		a.commit(wctx, batch)
		clear(batch)
	}
}

func (a *appender) commit(ctx context.Context, batch []*appendReq) {
	err := a.db.Write(ctx, func(q storage.Q) error {
		for _, r := range batch {
			if err := r.apply(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		for _, r := range batch {
			a.bus.Publish(r.events...)
			r.done <- nil
		}
		return
	}
	// One bad request (its run was deleted meanwhile) must not fail the others: retry alone.
	for _, r := range batch {
		if len(batch) == 1 {
			r.done <- err
			return
		}
		r.done <- a.commitAlone(ctx, r)
	}
}

func (a *appender) commitAlone(ctx context.Context, r *appendReq) error {
	err := a.db.Write(ctx, func(q storage.Q) error { return r.apply(ctx, q) })
	if err == nil {
		a.bus.Publish(r.events...)
	}
	return err
}

func (r *appendReq) apply(ctx context.Context, q storage.Q) error {
	if r.progress != nil {
		if _, err := q.SetRunProgress(ctx, r.progress.runID, r.progress.json); err != nil {
			return err
		}
	}
	if len(r.events) > 0 {
		return q.AppendRunEvents(ctx, r.events)
	}
	return nil
}

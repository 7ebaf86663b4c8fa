package webdav

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/retrying"
)

// exchange is one request in flight: its response and what must be released once the response
// has been consumed (the watchdog goroutine, the concurrency slot).
type exchange struct {
	resp    *http.Response
	rctx    context.Context
	wd      *watchdog
	release func()
}

// discard drains a little of the body so the connection can be reused, closes it and releases
// the exchange. Response bodies are never logged or kept.
func (x *exchange) discard() {
	_, _ = io.CopyN(io.Discard, x.resp.Body, 64<<10)
	x.resp.Body.Close()
	x.release()
}

// send waits for the rate limit of the method's class and a concurrency slot, then sends one
// authenticated request guarded by the no-progress watchdog. body, if not nil, reports its
// reads to the watchdog. On error nothing needs releasing.
func (t *Target) send(ctx context.Context, op, method, u string, body *attemptBody, size int64, header http.Header) (*exchange, error) {
	if err := t.waitRate(ctx, method); err != nil {
		return nil, fmt.Errorf("%s: wait for rate limit: %w", op, err)
	}
	if t.sem != nil {
		select {
		case t.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: wait for a request slot: %w", op, context.Cause(ctx))
		}
	}
	rctx, cancel := context.WithCancelCause(ctx)
	wd := startWatchdog(t.clk, t.timeout, cancel)
	var once sync.Once
	release := func() {
		once.Do(func() {
			wd.stop()
			cancel(nil)
			if t.sem != nil {
				<-t.sem
			}
		})
	}

	var rb io.Reader
	if body != nil {
		body.touch = wd.touch
		rb = body
		if size == 0 {
			rb = http.NoBody // a non-nil empty body would be sent chunked, without Content-Length
		}
	}
	req, err := http.NewRequestWithContext(rctx, method, u, rb)
	if err != nil {
		release()
		return nil, newErr(targets.KindConfig, op, 0, fmt.Errorf("build request: %w", err))
	}
	if body != nil {
		req.ContentLength = size
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.SetBasicAuth(t.user, t.pass)
	resp, err := t.client.Do(req)
	if body != nil {
		body.detach()
	}
	if err != nil {
		err = t.classifySendErr(ctx, rctx, op, body, err)
		release()
		return nil, err
	}
	wd.touch()
	return &exchange{resp: resp, rctx: rctx, wd: wd, release: release}, nil
}

func (t *Target) classifySendErr(ctx, rctx context.Context, op string, body *attemptBody, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, context.Cause(ctx))
	}
	if body != nil {
		if rerr := body.readErr(); rerr != nil {
			if errors.Is(rerr, errShortBody) {
				return newErr(targets.KindIntegrity, op, 0, rerr)
			}
			return newErr(targets.KindIO, op, 0, fmt.Errorf("read local data: %w", rerr))
		}
	}
	return transportErr(ctx, rctx, op, err)
}

func (t *Target) waitRate(ctx context.Context, method string) error {
	lim := t.limiters[method]
	if lim == nil {
		return ctx.Err()
	}
	now := t.clk.Now()
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return errors.New("rate limit burst below 1")
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return nil
	}
	if err := t.sleep(ctx, d); err != nil {
		r.CancelAt(t.clk.Now())
		return err
	}
	return nil
}

// attempt is one request of an operation. retryAfter is what the server asked for (ok=false
// if nothing); err is a *targets.Error when the failure is classified.
type attempt func() (retryAfter time.Duration, hasRetryAfter bool, err error)

// once sends one request: the retries are engine/targets/retrying's, under RetryPolicy. A
// classified failure carries the server's Retry-After.
func (t *Target) once(fn attempt) error {
	ra, hasRA, err := fn()
	var te *targets.Error
	if err != nil && errors.As(err, &te) {
		te.Attempts = 1
		if hasRA {
			te.RetryAfter = max(ra, time.Nanosecond) // "Retry-After: 0" still means "no backoff"
		}
	}
	return err
}

// RetryPolicy is the WebDAV retry policy: MaxPutAttempts for Put and 3 attempts for the rest,
// on the kinds targets.Retriable names (rate limits, timeouts, 5xx, network failures, which
// also rides out a dropped keep-alive connection); writes also on 423 Locked, since servers lock
// a path for the duration of a write (golang.org/x/net/webdav does) and the handler of an attempt
// abandoned may hold that lock until it notices the connection is gone (a concurrent MKCOL of
// the same collection gets 423 from rclone); GET only on 408/429/502/503/504 and network
// failures.
func (t *Target) RetryPolicy() retrying.Policy {
	return retrying.Policy{
		Attempts: func(op retrying.Op) int {
			if op == retrying.OpPut {
				return t.maxPut
			}
			return otherAttempts
		},
		Transient: func(op retrying.Op, e *targets.Error) bool {
			switch op {
			case retrying.OpPut, retrying.OpDelete, retrying.OpCleanup:
				return targets.Retriable(e.Kind) || e.HTTPStatus == http.StatusLocked
			case retrying.OpOpen:
				return retryGet(e)
			}
			return targets.Retriable(e.Kind)
		},
		Backoff: Backoff,
	}
}

// WithRetries is t retried under RetryPolicy, waiting with t's Sleep and logging to its logger.
func (t *Target) WithRetries() targets.Target {
	return retrying.Wrap(t, t.RetryPolicy(), retrying.Options{Sleep: t.sleep, Logger: t.log})
}

// retryGet is GET's narrower set: 408/429/502/503/504 and network failures.
func retryGet(e *targets.Error) bool {
	switch e.HTTPStatus {
	case 408, 429, 502, 503, 504:
		return true
	case 0:
		return e.Kind == targets.KindNetwork || e.Kind == targets.KindTimeout
	}
	return false
}

func (t *Target) retryAfter(resp *http.Response) (time.Duration, bool) {
	return ParseRetryAfter(resp.Header.Get("Retry-After"), t.clk.Now())
}

// attemptBody is a request body for one attempt. It stops the caller's reader from being read
// once the attempt is over (the transport may still be reading when Do returns, and the next
// attempt seeks the same reader), reports progress, takes exactly size bytes and notices a
// body that ends early.
type attemptBody struct {
	mu        sync.Mutex
	ctx       context.Context // once it is done, stop feeding the transport at once
	r         io.Reader
	remaining int64
	detached  bool
	err       error
	touch     func()
}

var errDetached = errors.New("request attempt is over")

func newAttemptBody(ctx context.Context, r io.Reader, size int64) *attemptBody {
	return &attemptBody{ctx: ctx, r: r, remaining: size}
}

func (b *attemptBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.detached {
		return 0, errDetached
	}
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	if b.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.r.Read(p)
	b.remaining -= int64(n)
	if b.touch != nil && n > 0 {
		b.touch()
	}
	switch {
	case err == io.EOF && b.remaining > 0:
		b.err = fmt.Errorf("%w: %d bytes missing", errShortBody, b.remaining)
		return n, b.err
	case err == io.EOF:
		return n, io.EOF
	case err != nil:
		b.err = err
	}
	return n, err
}

func (b *attemptBody) Close() error { b.detach(); return nil }

func (b *attemptBody) detach() {
	b.mu.Lock()
	b.detached = true
	b.mu.Unlock()
}

func (b *attemptBody) readErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// watchdog cancels a request that has made no progress for timeout. Progress is recorded as a
// time (not signalled), so a late-processed event can never push the deadline past a moment
// the clock has already reached.
type watchdog struct {
	clk     clock.Clock
	start   time.Time
	last    atomic.Int64 // time of the last progress, as a duration since start
	stopped chan struct{}
	done    chan struct{}
}

func startWatchdog(clk clock.Clock, timeout time.Duration, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{clk: clk, start: clk.Now(), stopped: make(chan struct{}), done: make(chan struct{})}
	timer := clk.NewTimer(timeout)
	go func() {
		defer close(w.done)
		defer timer.Stop()
		for {
			select {
			case <-w.stopped:
				return
			case <-timer.C():
			}
			idle := w.clk.Now().Sub(w.start) - time.Duration(w.last.Load())
			if idle >= timeout {
				cancel(errStalled)
				return
			}
			timer.Reset(timeout - idle)
		}
	}()
	return w
}

func (w *watchdog) touch() { w.last.Store(int64(w.clk.Now().Sub(w.start))) }

func (w *watchdog) stop() {
	close(w.stopped)
	<-w.done
}

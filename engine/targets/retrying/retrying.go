// Package retrying retries the operations of any targets.Target on the failures its driver's
// policy calls transient, waiting what the target asked for (targets.Error.RetryAfter) or a
// doubling backoff in between. Drivers send each request once and classify its failure; the
// retry loop lives here, once for all of them.
//
// Every operation of a Target is idempotent: Put resumes by size and its body is seeked back to
// the start before each attempt, CleanupRun and DeleteRun converge on "gone", and a stream from
// Open is reopened only while none of its bytes reached the caller.
package retrying

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/targets"
)

// Op names an operation of a Target, for a policy.
type Op string

const (
	OpPut     Op = "put"
	OpSize    Op = "size"
	OpOpen    Op = "open" // the request, and a stream that breaks before its first byte
	OpCleanup Op = "cleanup"
	OpDelete  Op = "delete"
)

// Policy is a driver's retry policy.
type Policy struct {
	// Attempts is how often op is tried in all; less than 1 means once.
	Attempts func(op Op) int
	// Transient reports whether a failure of op is worth another attempt. Nil: the kinds
	// targets.Retriable names.
	Transient func(op Op, e *targets.Error) bool
	// Backoff is the wait after attempt n failed when the error names no RetryAfter. Nil:
	// DefaultBackoff.
	Backoff func(n int) time.Duration
}

// DefaultBackoff waits 1 s after the first failure, doubling up to 30 s.
func DefaultBackoff(n int) time.Duration {
	d := time.Second
	for i := 1; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// Options are the wrapper's clock and logger.
type Options struct {
	// Sleep waits between attempts; nil waits on Clock (default the wall clock).
	Sleep  func(ctx context.Context, d time.Duration) error
	Clock  clock.Clock
	Logger zerolog.Logger
}

// Wrap returns t with its operations retried under p.
func Wrap(t targets.Target, p Policy, o Options) targets.Target {
	if p.Transient == nil {
		p.Transient = func(_ Op, e *targets.Error) bool { return targets.Retriable(e.Kind) }
	}
	if p.Backoff == nil {
		p.Backoff = DefaultBackoff
	}
	if p.Attempts == nil {
		p.Attempts = func(Op) int { return 1 }
	}
	if o.Sleep == nil {
		c := o.Clock
		if c == nil {
			c = clock.Real{}
		}
		o.Sleep = ClockSleep(c)
	}
	return &Target{t: t, p: p, sleep: o.Sleep, log: o.Logger}
}

// Target is a retrying targets.Target.
type Target struct {
	t     targets.Target
	p     Policy
	sleep func(ctx context.Context, d time.Duration) error
	log   zerolog.Logger
}

// Unwrap is the target retried.
func (w *Target) Unwrap() targets.Target { return w.t }

func (w *Target) Type() string                       { return w.t.Type() }
func (w *Target) Location(run targets.RunRef) string { return w.t.Location(run) }
func (w *Target) Redacted() targets.Redacted         { return w.t.Redacted() }

// attempt runs fn as attempt n of op. It returns done when there is nothing more to try:
// success, a failure that is not transient, or the last attempt. Otherwise it has waited.
func (w *Target) attempt(ctx context.Context, op Op, n int, err error) (done bool, out error) {
	if err == nil {
		return true, nil
	}
	var te *targets.Error
	if !errors.As(err, &te) {
		return true, err // not a classified target failure (a canceled context, a bad argument)
	}
	if te.Attempts > 0 { // a request's failure (not, say, a refused path): count the operation's tries
		te.Attempts = n
	}
	max := w.p.Attempts(op)
	if n >= max || !w.p.Transient(op, te) || ctx.Err() != nil {
		return true, err
	}
	delay := w.p.Backoff(n)
	if te.RetryAfter > 0 {
		delay = te.RetryAfter
	}
	w.log.Warn().Str("target", w.t.Type()).Str("op", te.Op).Int("attempt", n).Int("max_attempts", max).
		Str("kind", te.Kind).Int("http_status", te.HTTPStatus).Dur("retry_in", delay).
		Msg("target request failed; retrying")
	if serr := w.sleep(ctx, delay); serr != nil {
		return true, fmt.Errorf("%s: wait before attempt %d: %w", te.Op, n+1, serr)
	}
	return false, nil
}

// Do runs fn, one attempt of op, under w's policy until it succeeds, fails for good or the
// attempts run out: the retry loop for a driver's requests that are not a targets.Target method
// (a restore destination's writes), so that they are retried like the rest. fn must be safe to
// repeat (a PUT rewinds its body itself).
func (w *Target) Do(ctx context.Context, op Op, fn func() error) error {
	for n := 1; ; n++ {
		if done, err := w.attempt(ctx, op, n, fn()); done {
			return err
		}
	}
}

func (w *Target) Put(ctx context.Context, run targets.RunRef, name string, body io.ReadSeeker, size int64) (bool, error) {
	for n := 1; ; n++ {
		if n > 1 {
			if _, err := body.Seek(0, io.SeekStart); err != nil {
				return false, &targets.Error{Kind: targets.KindIO, Code: w.t.Type() + "_io", Op: "put " + name,
					Attempts: n - 1, Err: fmt.Errorf("rewind local data: %w", err)}
			}
		}
		skipped, err := w.t.Put(ctx, run, name, body, size)
		if done, err := w.attempt(ctx, OpPut, n, err); done {
			return skipped, err
		}
	}
}

func (w *Target) Size(ctx context.Context, run targets.RunRef, name string) (int64, error) {
	for n := 1; ; n++ {
		size, err := w.t.Size(ctx, run, name)
		if done, err := w.attempt(ctx, OpSize, n, err); done {
			return size, err
		}
	}
}

func (w *Target) CleanupRun(ctx context.Context, run targets.RunRef) (targets.CleanupResult, error) {
	for n := 1; ; n++ {
		res, err := w.t.CleanupRun(ctx, run)
		if done, err := w.attempt(ctx, OpCleanup, n, err); done {
			return res, err
		}
	}
}

func (w *Target) DeleteRun(ctx context.Context, run targets.RunRef) (targets.DeleteResult, error) {
	for n := 1; ; n++ {
		res, err := w.t.DeleteRun(ctx, run)
		if done, err := w.attempt(ctx, OpDelete, n, err); done {
			return res, err
		}
	}
}

// Open opens run/name, retrying the request, and reopens the stream when it breaks before any
// byte reached the caller; both share OpOpen's attempts. After the first byte a failure ends the
// stream: the caller cannot un-read what it got.
func (w *Target) Open(ctx context.Context, run targets.RunRef, name string) (io.ReadCloser, error) {
	r := &reader{w: w, ctx: ctx, run: run, name: name}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

type reader struct {
	w     *Target
	ctx   context.Context
	run   targets.RunRef
	name  string
	rc    io.ReadCloser
	tries int
	read  int64
}

func (r *reader) open() error {
	for {
		r.tries++
		rc, err := r.w.t.Open(r.ctx, r.run, r.name)
		if err == nil {
			r.rc = rc
			return nil
		}
		if done, err := r.w.attempt(r.ctx, OpOpen, r.tries, err); done {
			return err
		}
	}
}

func (r *reader) Read(p []byte) (int, error) {
	for {
		if r.rc == nil {
			return 0, errors.New("read after a failed reopen")
		}
		n, err := r.rc.Read(p)
		r.read += int64(n)
		if err == nil || errors.Is(err, io.EOF) || r.read > 0 {
			return n, err
		}
		// Nothing reached the caller yet: start over with a new request, if the policy agrees.
		if done, aerr := r.w.attempt(r.ctx, OpOpen, r.tries, err); done {
			return 0, aerr
		}
		r.rc.Close()
		r.rc = nil
		if err := r.open(); err != nil {
			return 0, err
		}
	}
}

func (r *reader) Close() error {
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}

// ClockSleep waits d on c, or less if ctx ends first; drivers use it as their default Sleep.
func ClockSleep(c clock.Clock) func(ctx context.Context, d time.Duration) error {
	return func(ctx context.Context, d time.Duration) error {
		if d <= 0 {
			return ctx.Err()
		}
		tm := c.NewTimer(d)
		defer tm.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tm.C():
			return nil
		}
	}
}

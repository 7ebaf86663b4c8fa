package retrying_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/retrying"
	"github.com/bastion-backup/bastion/engine/targets/targettest"
)

// flaky is a fault-injecting target: each call of an operation pops the next error of its
// script (nil: succeed through the real target inside).
type flaky struct {
	targets.Target
	mu     sync.Mutex
	script map[string][]error
	calls  map[string]int
	// breakStream makes the streams Open returns fail after this many bytes (-1: never).
	breakStream []int
	seen        [][]byte // what each Put read from its body
}

func (f *flaky) next(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if s := f.script[op]; len(s) > 0 {
		f.script[op] = s[1:]
		return s[0]
	}
	return nil
}

func (f *flaky) Put(ctx context.Context, run targets.RunRef, name string, body io.ReadSeeker, size int64) (bool, error) {
	if err := f.next("put"); err != nil {
		b, _ := io.ReadAll(io.LimitReader(body, size/2)) // a failed attempt consumed part of the body
		f.seen = append(f.seen, b)
		return false, err
	}
	return f.Target.Put(ctx, run, name, body, size)
}

func (f *flaky) Size(ctx context.Context, run targets.RunRef, name string) (int64, error) {
	if err := f.next("size"); err != nil {
		return 0, err
	}
	return f.Target.Size(ctx, run, name)
}

type breaking struct {
	io.ReadCloser
	left int
}

func (b *breaking) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, transient("get", 0)
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= n
	return n, err
}

func (f *flaky) Open(ctx context.Context, run targets.RunRef, name string) (io.ReadCloser, error) {
	if err := f.next("open"); err != nil {
		return nil, err
	}
	rc, err := f.Target.Open(ctx, run, name)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && len(f.breakStream) > 0 {
		n := f.breakStream[0]
		f.breakStream = f.breakStream[1:]
		if n >= 0 {
			return &breaking{ReadCloser: rc, left: n}, nil
		}
	}
	return rc, err
}

func transient(op string, retryAfter time.Duration) *targets.Error {
	return &targets.Error{Kind: targets.KindUpstreamUnavailable, Code: "x_upstream_unavailable", Op: op, HTTPStatus: 503,
		Attempts: 1, RetryAfter: retryAfter, Err: errors.New("503")}
}

func permanent(op string) *targets.Error {
	return &targets.Error{Kind: targets.KindAuth, Code: "x_auth", Op: op, HTTPStatus: 401, Attempts: 1, Err: errors.New("401")}
}

type bundle struct {
	f      *flaky
	tg     targets.Target
	mu     sync.Mutex
	waited []time.Duration
}

func setup(t *testing.T, p retrying.Policy) *bundle {
	t.Helper()
	inner, err := localdir.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{f: &flaky{Target: inner, script: map[string][]error{}, calls: map[string]int{}}}
	b.tg = retrying.Wrap(b.f, p, retrying.Options{Logger: zerolog.New(zerolog.NewTestWriter(t)),
		Sleep: func(ctx context.Context, d time.Duration) error {
			b.mu.Lock()
			b.waited = append(b.waited, d)
			b.mu.Unlock()
			return ctx.Err()
		}})
	return b
}

func threeTimes(retrying.Op) int { return 3 }

func TestWrappedTargetPassesConformance(t *testing.T) {
	t.Parallel()
	targettest.Run(t, func(t *testing.T) targets.Target {
		return setup(t, retrying.Policy{Attempts: threeTimes}).tg
	})
}

func TestRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("AttemptsRunOut", func(t *testing.T) {
		t.Parallel()
		b := setup(t, retrying.Policy{Attempts: threeTimes})
		b.f.script["size"] = []error{transient("head", 0), transient("head", 0), transient("head", 0), nil}
		_, err := b.tg.Size(ctx, targettest.NewRun(t), "x")
		var te *targets.Error
		if !errors.As(err, &te) || te.Attempts != 3 || b.f.calls["size"] != 3 {
			t.Fatalf("err %v after %d calls", err, b.f.calls["size"])
		}
		if !slices.Equal(b.waited, []time.Duration{time.Second, 2 * time.Second}) {
			t.Fatalf("waited %v", b.waited)
		}
	})

	t.Run("PermanentNotRetried", func(t *testing.T) {
		t.Parallel()
		b := setup(t, retrying.Policy{Attempts: threeTimes})
		b.f.script["size"] = []error{permanent("head")}
		_, err := b.tg.Size(ctx, targettest.NewRun(t), "x")
		if targets.KindOf(err) != targets.KindAuth || b.f.calls["size"] != 1 || len(b.waited) != 0 {
			t.Fatalf("err %v after %d calls, waited %v", err, b.f.calls["size"], b.waited)
		}
	})

	t.Run("PolicyPerOperation", func(t *testing.T) {
		t.Parallel()
		b := setup(t, retrying.Policy{Attempts: threeTimes,
			Transient: func(op retrying.Op, e *targets.Error) bool { return op == retrying.OpPut }})
		b.f.script["size"] = []error{transient("head", 0)}
		if _, err := b.tg.Size(ctx, targettest.NewRun(t), "x"); err == nil || b.f.calls["size"] != 1 {
			t.Fatalf("size retried against the policy: %v, %d calls", err, b.f.calls["size"])
		}
	})

	t.Run("CanceledWaitEnds", func(t *testing.T) {
		t.Parallel()
		b := setup(t, retrying.Policy{Attempts: threeTimes})
		b.f.script["size"] = []error{transient("head", 0), transient("head", 0)}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := b.tg.Size(cctx, targettest.NewRun(t), "x"); err == nil || b.f.calls["size"] != 1 {
			t.Fatalf("retried under a canceled context: %v, %d calls", err, b.f.calls["size"])
		}
	})
}

func TestPutSeeksBackAndHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, retrying.Policy{Attempts: threeTimes})
	b.f.script["put"] = []error{transient("put", 0), transient("put", 7*time.Second)}
	run := targettest.NewRun(t)
	c := targettest.NewContent(4, 4096)
	if _, err := b.tg.Put(ctx, run, "payload.part000001", c, 4096); err != nil {
		t.Fatal(err)
	}
	targettest.Expect(t, b.tg, run, "payload.part000001", 4, 4096)
	if !slices.Equal(b.waited, []time.Duration{time.Second, 7 * time.Second}) {
		t.Fatalf("waited %v, want the backoff then the Retry-After", b.waited)
	}
	if len(b.f.seen) != 2 || !bytes.Equal(b.f.seen[0], b.f.seen[1]) {
		t.Fatalf("the second attempt did not read the body from its start")
	}
}

func TestOpenReopensOnlyBeforeTheFirstByte(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("BrokeBeforeFirstByte", func(t *testing.T) {
		t.Parallel()
		b := setup(t, retrying.Policy{Attempts: threeTimes})
		run := targettest.NewRun(t)
		targettest.Put(t, b.tg, run, "f", 1, 70000)
		b.f.script["open"] = []error{transient("get", 0)}
		b.f.breakStream = []int{0, -1}
		targettest.Expect(t, b.tg, run, "f", 1, 70000)
		if b.f.calls["open"] != 3 || !slices.Equal(b.waited, []time.Duration{time.Second, 2 * time.Second}) {
			t.Fatalf("%d opens, waited %v", b.f.calls["open"], b.waited)
		}
	})

	t.Run("BrokeAfterBytes", func(t *testing.T) {
		t.Parallel()
		b := setup(t, retrying.Policy{Attempts: threeTimes})
		run := targettest.NewRun(t)
		targettest.Put(t, b.tg, run, "f", 1, 70000)
		b.f.breakStream = []int{1000}
		rc, err := b.tg.Open(ctx, run, "f")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		n, err := io.Copy(io.Discard, rc)
		if n != 1000 || err == nil || !strings.Contains(err.Error(), "503") || b.f.calls["open"] != 1 {
			t.Fatalf("read %d, %v after %d opens", n, err, b.f.calls["open"])
		}
	})
}

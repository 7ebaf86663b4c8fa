// Package bulk runs bulk operations: one operation, many agents, one item per agent, each item
// done on its own by the work its kind registered (Handle). The loop keeps at most Concurrency
// items in flight, sleeps until woken (a new operation, a retry, a finished item), and on start
// puts back in the queue the items a stopped Hub left running: every kind's work must therefore
// be safe to repeat.
//
// The kinds themselves live with the code that does the same thing for one agent (the HTTP
// layer), which registers them here: the engine never imports a transport.
package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/storage"
)

// DefaultConcurrency is how many items run at once (hub.md §8: ≤ 8).
const DefaultConcurrency = 8

// retryAfterError is how long the loop waits after the database refused a claim.
const retryAfterError = 5 * time.Second

// Kind is the work of one bulk operation kind for one agent. A nil error is success, with an
// optional note (Note.Kind empty: none); an *Error fails the item with its kind; any other error
// fails it as internal_error. payload is the operation's stored payload, validated when the
// operation was created.
type Kind interface {
	Do(ctx context.Context, it Item, payload json.RawMessage) (Note, error)
}

// Item names the item being done: work that must not be done twice (creating a job) derives
// its identity from OpID and AgentID, so that a repeat after a restart finds it done.
type Item struct {
	OpID, AgentID string
	Attempt       int64 // 1 for the first
}

// KindFunc adapts a function to Kind.
type KindFunc func(ctx context.Context, it Item, payload json.RawMessage) (Note, error)

// Do calls f.
func (f KindFunc) Do(ctx context.Context, it Item, payload json.RawMessage) (Note, error) {
	return f(ctx, it, payload)
}

// Note is recorded with a successful item in last_error_kind/last_error (the original's
// "success with note", e.g. skipped / already exists).
type Note struct{ Kind, Message string }

// Error is an item failure the user can act on: Kind goes to last_error_kind (agent_revoked,
// validation_failed, …), Message to last_error.
type Error struct{ Kind, Message string }

func (e *Error) Error() string { return e.Kind + ": " + e.Message }

// Fail returns an item failure of kind.
func Fail(kind, message string) error { return &Error{Kind: kind, Message: message} }

// Config wires a Loop.
type Config struct {
	DB          *storage.DB
	Clock       clock.Clock
	Log         zerolog.Logger
	Concurrency int // 0: DefaultConcurrency
}

// Loop runs the items of bulk operations.
type Loop struct {
	cfg  Config
	log  zerolog.Logger
	wake chan struct{}

	mu    sync.Mutex
	kinds map[string]Kind
}

// New builds a Loop; register kinds with Handle, then Run it.
func New(cfg Config) *Loop {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	return &Loop{cfg: cfg, log: cfg.Log.With().Str("component", "bulk").Logger(),
		wake: make(chan struct{}, 1), kinds: map[string]Kind{}}
}

// Handle registers the work of kind, replacing any earlier one.
func (l *Loop) Handle(kind string, k Kind) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kinds[kind] = k
}

// Known reports whether kind has registered work.
func (l *Loop) Known(kind string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.kinds[kind]
	return ok
}

func (l *Loop) kind(name string) Kind {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.kinds[name]
}

// Wake makes the loop look for queued items now (an operation was created or retried).
func (l *Loop) Wake() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run requeues the items a previous run left running, then works the queue until ctx ends. On
// return no item is in flight; an item whose work ctx interrupted stays running in the database
// and is requeued by the next Run.
func (l *Loop) Run(ctx context.Context) error {
	if n, err := l.cfg.DB.Writer().RequeueRunningBulkItems(ctx, l.cfg.Clock.Now().Unix()); err != nil {
		return fmt.Errorf("bulk operations: %w", err)
	} else if n > 0 {
		l.log.Warn().Int64("items", n).Msg("bulk items interrupted by the last shutdown were queued again")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	done := make(chan struct{}, l.cfg.Concurrency)
	inFlight := 0
	var retry clock.Timer
	for {
		var retryC <-chan time.Time
		if free := l.cfg.Concurrency - inFlight; free > 0 && retry == nil {
			items, err := l.cfg.DB.Writer().ClaimBulkItems(ctx, free, l.cfg.Clock.Now().Unix())
			if err != nil && ctx.Err() == nil {
				l.log.Error().Err(err).Msg("claim bulk items; retrying")
				retry = l.cfg.Clock.NewTimer(retryAfterError)
			}
			for _, it := range items {
				inFlight++
				wg.Add(1)
				go func() {
					defer wg.Done()
					l.process(ctx, it)
					done <- struct{}{}
				}()
			}
		}
		if retry != nil {
			retryC = retry.C()
		}
		select {
		case <-ctx.Done():
			if retry != nil {
				retry.Stop()
			}
			return nil
		case <-l.wake:
		case <-done:
			inFlight--
		case <-retryC:
			retry = nil
		}
	}
}

// process does one claimed item and records its end, unless ctx ended meanwhile: then the item
// stays running and the next start requeues it.
func (l *Loop) process(ctx context.Context, it storage.ClaimedBulkItem) {
	log := l.log.With().Str("op_id", it.OpID).Str("agent_id", it.AgentID).Str("kind", it.Kind).Logger()
	status, errKind, errMsg := storage.BulkItemSuccess, "", ""
	k := l.kind(it.Kind)
	if k == nil {
		status, errKind, errMsg = storage.BulkItemFailed, "unknown_kind", "unknown bulk operation kind "+it.Kind
	} else {
		note, err := k.Do(ctx, Item{OpID: it.OpID, AgentID: it.AgentID, Attempt: it.Attempts}, json.RawMessage(it.PayloadJSON))
		if ctx.Err() != nil {
			return
		}
		var fe *Error
		switch {
		case err == nil:
			errKind, errMsg = note.Kind, note.Message
		case errors.As(err, &fe):
			status, errKind, errMsg = storage.BulkItemFailed, fe.Kind, fe.Message
		default:
			status, errKind, errMsg = storage.BulkItemFailed, "internal_error", err.Error()
		}
	}
	var kp, mp *string
	if errKind != "" {
		kp, mp = &errKind, &errMsg
	}
	if err := l.cfg.DB.Writer().FinishBulkItem(ctx, it.OpID, it.AgentID, status, kp, mp, l.cfg.Clock.Now().Unix()); err != nil {
		if ctx.Err() == nil {
			log.Error().Err(err).Msg("record the end of a bulk item")
		}
		return
	}
	ev := log.Debug()
	if status == storage.BulkItemFailed {
		ev = log.Warn().Str("error_kind", errKind).Str("error", errMsg)
	}
	ev.Int64("attempt", it.Attempts).Str("status", status).Msg("bulk item finished")
}

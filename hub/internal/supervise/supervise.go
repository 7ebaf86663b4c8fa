// Package supervise runs the Hub's long-lived loops so that none can die quietly: a loop that
// returns or panics before shutdown stops every other loop and makes the Hub exit with an error,
// rather than leaving it half-alive (answering HTTP while nothing is scheduled any more).
package supervise

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/rs/zerolog"
)

// Group is a set of loops sharing one context.
type Group struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	log    zerolog.Logger
	wg     sync.WaitGroup

	mu  sync.Mutex
	err error
}

// New returns a group whose context ends when parent ends or any loop fails.
func New(parent context.Context, log zerolog.Logger) (*Group, context.Context) {
	ctx, cancel := context.WithCancelCause(parent)
	return &Group{ctx: ctx, cancel: cancel, log: log}, ctx
}

// Go starts a loop. It is expected to run until its context ends; returning earlier — with or
// without an error — or panicking is a failure of the whole Hub.
func (g *Group) Go(name string, loop func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := g.runOne(name, loop)
		if g.ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
			// Normal shutdown, or a loop that shutdown interrupted mid-pass (a query canceled
			// with its context): neither is a failure. An earlier failure is already recorded.
			return
		}
		if err == nil {
			err = fmt.Errorf("loop %s stopped unexpectedly", name)
		}
		if g.ctx.Err() == nil {
			g.log.Error().Err(err).Str("loop", name).Msg("a loop of the Hub failed; shutting down")
		}
		g.fail(err)
	}()
}

func (g *Group) runOne(name string, loop func(ctx context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			g.log.Error().Str("loop", name).Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack()).Msg("loop panicked")
			err = fmt.Errorf("loop %s panicked: %v", name, v)
		}
	}()
	if err := loop(g.ctx); err != nil {
		return fmt.Errorf("loop %s: %w", name, err)
	}
	return nil
}

func (g *Group) fail(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.mu.Unlock()
	g.cancel(err)
}

// Wait blocks until every loop has returned and gives the first failure, or nil when the loops
// stopped because the parent context ended.
func (g *Group) Wait() error {
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

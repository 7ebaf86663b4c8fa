// Package periodic runs the Hub's fixed-interval housekeeping passes (expired rows, run history,
// retention): work that is never urgent, so nothing wakes it early and its interval is its only
// deadline.
package periodic

import (
	"context"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
)

// Run calls pass once first has elapsed and then every interval after the previous pass ended,
// until ctx ends; it returns nil then. pass deals with its own failures (log them): the next pass
// is the retry.
func Run(ctx context.Context, c clock.Clock, first, interval time.Duration, pass func(context.Context)) error {
	t := c.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		pass(ctx)
		t.Reset(interval) // after the work; no draining on Go >= 1.23
	}
}

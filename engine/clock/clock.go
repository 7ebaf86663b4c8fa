// Package clock lets long-running loops wait on time without binding them to the wall clock,
// so that tests can drive days of schedules in microseconds and never sleep.
package clock

import "time"

// Clock is the source of time for anything that schedules.
type Clock interface {
	Now() time.Time
	// NewTimer arms a timer that fires once after d. A d <= 0 fires at once.
	NewTimer(d time.Duration) Timer
}

// Timer follows the semantics of time.Timer on Go >= 1.23: its channel has capacity 1 and
// Reset or Stop discard a value not yet received, so callers never drain it.
type Timer interface {
	C() <-chan time.Time
	Reset(d time.Duration) bool
	Stop() bool
}

// Real is the wall clock.
type Real struct{}

func (Real) Now() time.Time { return time.Now() }

func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }
func (r realTimer) Stop() bool                 { return r.t.Stop() }

package clock

import (
	"context"
	"sync"
	"time"
)

// Fake is a manually driven clock for tests. Time moves only through Advance and Set; Set may
// move it backwards to simulate an NTP step or a resume from suspend.
//
// Loops under test re-arm their timer after each wake-up; ArmCount and WaitArmCount let a test
// wait for that instead of sleeping.
type Fake struct {
	mu       sync.Mutex
	now      time.Time
	timers   map[*fakeTimer]struct{}
	arms     uint64
	fires    uint64
	armedSig chan struct{} // closed and replaced on every arm
}

// NewFake returns a fake clock reading start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, timers: map[*fakeTimer]struct{}{}, armedSig: make(chan struct{})}
}

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	f.mu.Lock()
	t.armLocked(d)
	f.mu.Unlock()
	f.fireDue()
	return t
}

// Advance moves time forward by d and fires every timer that is due, in deadline order.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
	f.fireDue()
}

// Set jumps to t, forwards or backwards. Timers keep their deadlines in absolute time,
// as a monotonic clock would not, which is exactly what a wall-clock jump looks like to a loop
// that computes its sleep from Now().
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	f.now = t
	f.mu.Unlock()
	f.fireDue()
}

// ArmCount is how many times a timer has been created or reset.
func (f *Fake) ArmCount() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.arms
}

// Fires is how many times a timer has fired: the number of timer wake-ups a loop has had.
func (f *Fake) Fires() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fires
}

// WaitArmCount blocks until ArmCount() >= n or ctx ends.
func (f *Fake) WaitArmCount(ctx context.Context, n uint64) error {
	for {
		f.mu.Lock()
		if f.arms >= n {
			f.mu.Unlock()
			return nil
		}
		sig := f.armedSig
		f.mu.Unlock()
		select {
		case <-sig:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// NextDeadline returns the earliest deadline of an armed timer.
func (f *Fake) NextDeadline() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var best time.Time
	ok := false
	for t := range f.timers {
		if !ok || t.deadline.Before(best) {
			best, ok = t.deadline, true
		}
	}
	return best, ok
}

// Armed is the number of timers waiting to fire.
func (f *Fake) Armed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

func (f *Fake) fireDue() {
	for {
		f.mu.Lock()
		var due *fakeTimer
		for t := range f.timers {
			if !t.deadline.After(f.now) && (due == nil || t.deadline.Before(due.deadline)) {
				due = t
			}
		}
		if due == nil {
			f.mu.Unlock()
			return
		}
		delete(f.timers, due)
		f.fires++
		now := f.now
		f.mu.Unlock()
		select {
		case due.c <- now:
		default:
		}
	}
}

type fakeTimer struct {
	f        *Fake
	c        chan time.Time
	deadline time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	_, active := t.f.timers[t]
	t.drain()
	t.armLocked(d)
	t.f.mu.Unlock()
	t.f.fireDue()
	return active
}

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	_, active := t.f.timers[t]
	delete(t.f.timers, t)
	t.drain()
	return active
}

func (t *fakeTimer) drain() {
	select {
	case <-t.c:
	default:
	}
}

func (t *fakeTimer) armLocked(d time.Duration) {
	t.deadline = t.f.now.Add(d)
	t.f.timers[t] = struct{}{}
	t.f.arms++
	close(t.f.armedSig)
	t.f.armedSig = make(chan struct{})
}

package targettest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// Sleeps records the waits a driver asks for (set Sleep as its Options.Sleep) and returns at
// once, so retries cost no time and a test can assert the exact delays.
type Sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

// Sleep records d and returns the context's error.
func (s *Sleeps) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

// Got returns the waits asked for so far, in order.
func (s *Sleeps) Got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// ExpectSleeps fails the test unless exactly the waits want were asked for, in this order.
func ExpectSleeps(t testing.TB, s *Sleeps, want ...time.Duration) {
	t.Helper()
	if got := s.Got(); !slices.Equal(got, want) {
		t.Fatalf("waits = %v, want %v", got, want)
	}
}

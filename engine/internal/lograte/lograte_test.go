package lograte

import (
	"testing"
	"time"
)

func TestLimiterAllowsOnePerInterval(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var l Limiter
	for _, step := range []struct {
		at   time.Duration
		want bool
	}{
		{0, true},                 // the first message
		{time.Second, false},      // within the minute
		{59 * time.Second, false}, // still within
		{time.Minute, true},       // a minute after the last one let through
		{time.Minute + time.Second, false},
		{30 * time.Second, true}, // the clock went back: let it through, count from there
		{31 * time.Second, false},
	} {
		if got := l.Allow(t0.Add(step.at), time.Minute); got != step.want {
			t.Fatalf("Allow(+%s) = %t, want %t", step.at, got, step.want)
		}
	}
}

package protocol

import (
	"math"
	"testing"
	"time"
)

// TestHeartbeatInterval: hello.heartbeat_seconds comes from a possibly hostile agent; whatever it
// says, the interval is within [MinHeartbeat, MaxHeartbeat] and three of them still fit in a
// time.Duration (a huge value used to overflow into a negative read deadline).
func TestHeartbeatInterval(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	for _, tc := range []struct {
		name string
		in   *float64
		want time.Duration
		ok   bool
	}{
		{"Absent", nil, 0, false},
		{"Zero", f(0), 0, false},
		{"Negative", f(-5), 0, false},
		{"NaN", f(math.NaN()), 0, false},
		{"Default", f(15), 15 * time.Second, true},
		{"Fraction", f(0.2), 200 * time.Millisecond, true},
		{"Tiny", f(1e-9), MinHeartbeat, true},
		{"Max", f(3600), MaxHeartbeat, true},
		{"AboveMax", f(3601), MaxHeartbeat, true},
		{"OverflowsDuration", f(1e10), MaxHeartbeat, true},
		{"Huge", f(1e300), MaxHeartbeat, true},
		{"Inf", f(math.Inf(1)), MaxHeartbeat, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := HeartbeatInterval(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("HeartbeatInterval = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
			if 3*got < 0 {
				t.Fatalf("three intervals overflow: %v", 3*got)
			}
		})
	}
	if got := ClampHeartbeat(time.Duration(math.MaxInt64)); got != MaxHeartbeat {
		t.Fatalf("ClampHeartbeat(max) = %v", got)
	}
	if got := ClampHeartbeat(time.Nanosecond); got != MinHeartbeat {
		t.Fatalf("ClampHeartbeat(1ns) = %v", got)
	}
}

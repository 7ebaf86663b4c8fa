package client

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, j := range []Jitter{JitterDecorrelated, JitterFull, JitterNone, JitterHalf} {
		b := &Backoff{Base: time.Second, Cap: 30 * time.Second, Jitter: j, ID: "agent-1", Rand: rng.Float64}
		base, prev := time.Second, time.Second
		for i := 0; i < 50; i++ {
			d := b.Next()
			var lo, hi time.Duration
			switch j {
			case JitterDecorrelated:
				lo, hi = time.Second, min(30*time.Second, 3*prev)
				prev = d
			case JitterFull:
				lo, hi = 0, base
			case JitterNone:
				lo, hi = base, base
			case JitterHalf:
				lo, hi = base/2, base
			}
			if d < lo || d > hi {
				t.Fatalf("jitter %d attempt %d: %v outside [%v, %v]", j, i, d, lo, hi)
			}
			base = min(2*base, 30*time.Second)
		}
	}
}

func TestBackoffResetStartsOver(t *testing.T) {
	t.Parallel()
	b := &Backoff{Base: time.Second, Cap: 30 * time.Second, Jitter: JitterNone}
	for i := 0; i < 10; i++ {
		b.Next()
	}
	if d := b.Next(); d != 30*time.Second {
		t.Fatalf("capped delay %v", d)
	}
	b.Reset()
	if d := b.Next(); d != time.Second {
		t.Fatalf("after reset %v", d)
	}
	dec := &Backoff{Base: time.Second, Cap: 30 * time.Second, Rand: func() float64 { return 0.999999 }}
	for i := 0; i < 10; i++ {
		dec.Next()
	}
	dec.Reset()
	if d := dec.Next(); d > 3*time.Second {
		t.Fatalf("decorrelated after reset %v, want ≤ 3 s", d)
	}
}

// TestHalfJitterMatchesOriginal pins the original's formula: deterministic per (id, attempt),
// different across agents, within [base/2, base].
func TestHalfJitterMatchesOriginal(t *testing.T) {
	t.Parallel()
	a1 := HalfJitter(time.Second, "a", 1)
	if a1 != HalfJitter(time.Second, "a", 1) {
		t.Fatal("not deterministic")
	}
	differ := false
	for i := uint64(0); i < 10; i++ {
		if HalfJitter(time.Second, "a", i) != HalfJitter(time.Second, "b", i) {
			differ = true
		}
	}
	if !differ {
		t.Fatal("two agents got the same delays")
	}
	if HalfJitter(0, "a", 1) != 0 || HalfJitter(time.Millisecond, "a", 1) != time.Millisecond {
		t.Fatal("edge cases")
	}
	// fnv1a64("a") = 0xaf63dc4c8601ec8c; seed = that + 1·φ; half_ms = 500.
	h, phi := uint64(0xaf63dc4c8601ec8c), uint64(0x9e3779b97f4a7c15)
	seed := h + phi // wrapping, as the original
	if want := 500*time.Millisecond + time.Duration(seed%501)*time.Millisecond; a1 != want {
		t.Fatalf("HalfJitter(1s, a, 1) = %v, want %v", a1, want)
	}
}

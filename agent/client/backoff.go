package client

import (
	"math/rand/v2"
	"time"
)

// Reconnect backoff: exponential from BackoffBase to BackoffCap with full jitter, reset once a
// connection has stayed healthy for BackoffResetAfter.
//
// Why full jitter rather than the original's deterministic [base/2, base]: after a Hub restart
// every agent starts its backoff at the same instant, so the spread of the first attempts is the
// spread of the jitter. Full jitter draws from [0, base], twice the width of [base/2, base], which
// halves the peak attempts per interval, and it needs no per-agent seed (the original hashes the
// agent id so that agents differ). Decorrelated jitter spreads about as well but grows less
// predictably; full jitter keeps the cap exact.
const (
	BackoffBase       = time.Second
	BackoffCap        = 30 * time.Second
	BackoffResetAfter = time.Minute
)

// Backoff computes reconnect delays. Not safe for concurrent use.
type Backoff struct {
	Base, Cap time.Duration
	// Rand returns a number in [0, 1); nil uses math/rand/v2.
	Rand func() float64
	// NoJitter sleeps exactly base each time (benchmarks' baseline).
	NoJitter bool
	base     time.Duration
}

// Next returns the delay before the next attempt and doubles the base, up to Cap.
func (b *Backoff) Next() time.Duration {
	if b.base == 0 {
		b.base = b.Base
	}
	d := b.base
	b.base = min(2*b.base, b.Cap)
	if b.NoJitter {
		return d
	}
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	return time.Duration(r() * float64(d+1))
}

// Reset starts over from Base.
func (b *Backoff) Reset() { b.base = b.Base }

// HalfJitter is the original's deterministic jitter, for comparison: a delay in [base/2, base]
// derived from the agent id and the attempt number.
func HalfJitter(base time.Duration, id string, attempt uint64) time.Duration {
	if base == 0 {
		return 0
	}
	half := base / 2
	if half < time.Millisecond {
		return base
	}
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 0x100000001b3
	}
	seed := h + attempt*0x9e3779b97f4a7c15
	halfMS := uint64(half / time.Millisecond)
	return half + time.Duration(seed%(halfMS+1))*time.Millisecond
}

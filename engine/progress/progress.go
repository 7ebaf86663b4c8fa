// Package progress throttles the progress of a backup, restore or verify into snapshots of the
// shape stored in runs.progress_json / operations.progress_json (backup.md §13).
package progress

import (
	"sync"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
)

// Kind is what is progressing.
type Kind string

const (
	KindBackup  Kind = "backup"
	KindRestore Kind = "restore"
	KindVerify  Kind = "verify"
)

// Units counts what is done or expected.
type Units struct {
	Files uint64 `json:"files"`
	Dirs  uint64 `json:"dirs"`
	Bytes uint64 `json:"bytes"`
}

// Totals is what a stage expects to do.
type Totals = Units

// Reached reports whether u has reached total in every unit: the stage is complete.
func (u Units) Reached(total Totals) bool {
	return u.Files >= total.Files && u.Dirs >= total.Dirs && u.Bytes >= total.Bytes
}

// Snapshot is one progress value: {v:1, kind, stage, ts, done, total?, rate_bps?, eta_seconds?, detail?}.
type Snapshot struct {
	V          int     `json:"v"`
	Kind       Kind    `json:"kind"`
	Stage      string  `json:"stage"`
	TS         int64   `json:"ts"` // unix seconds
	Done       Units   `json:"done"`
	Total      *Totals `json:"total,omitempty"`
	RateBPS    *uint64 `json:"rate_bps,omitempty"`
	ETASeconds *uint64 `json:"eta_seconds,omitempty"`
	Detail     any     `json:"detail,omitempty"`
}

// Sink receives snapshots. It is called from the reporting goroutine with the Reporter's lock
// held, so it should be quick (store the latest value; write it elsewhere).
type Sink func(Snapshot)

// Interval is the shortest time between two forwarded snapshots of one stage.
const Interval = time.Second

// Reporter forwards snapshots to a sink at most once per Interval, immediately on a stage
// change and when done reaches total, and always forwards the last value on Close. Rate is
// bytes per second between two forwarded snapshots of a stage; ETA is remaining bytes / rate.
// A nil *Reporter ignores every call, so callers need no checks. Safe for concurrent use.
type Reporter struct {
	mu     sync.Mutex
	kind   Kind
	clk    clock.Clock
	sink   Sink
	cur    Snapshot
	dirty  bool // cur changed since the last forward
	closed bool
	// rate window: bytes and time at the last forward in this stage
	lastAt    time.Time
	lastBytes uint64
	lastRate  *uint64
	finished  bool // done >= total was forwarded for this stage
}

// NewReporter returns a reporter of kind that forwards to sink.
func NewReporter(kind Kind, clk clock.Clock, sink Sink) *Reporter {
	return &Reporter{kind: kind, clk: clk, sink: sink}
}

// Stage starts a new stage with an optional total and forwards at once. Counters, rate and ETA
// restart with the stage.
func (r *Reporter) Stage(stage string, total *Totals) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	now := r.clk.Now()
	var t *Totals
	if total != nil {
		c := *total
		t = &c
	}
	r.cur = Snapshot{V: 1, Kind: r.kind, Stage: stage, Total: t, Detail: r.cur.Detail}
	r.lastAt, r.lastBytes, r.lastRate, r.finished = now, 0, nil, false
	r.forwardLocked(now)
}

// Set records the stage's absolute done counts and forwards when due.
func (r *Reporter) Set(done Units) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.cur.Done = done
	r.dirty = true
	r.maybeForwardLocked()
}

// SetDetail replaces the free-form detail object carried by every later snapshot.
func (r *Reporter) SetDetail(detail any) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur.Detail = detail
	r.dirty = true
}

// Close forwards the last value if it was not forwarded yet; later calls do nothing.
func (r *Reporter) Close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if r.dirty && r.cur.Stage != "" {
		r.forwardLocked(r.clk.Now())
	}
	r.closed = true
}

// Last returns the latest value (forwarded or not).
func (r *Reporter) Last() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.cur
	s.V, s.Kind = 1, r.kind
	return s
}

func (r *Reporter) maybeForwardLocked() {
	if r.cur.Stage == "" {
		return
	}
	now := r.clk.Now()
	complete := r.cur.Total != nil && r.cur.Done.Reached(*r.cur.Total)
	if complete && !r.finished {
		r.finished = true
		r.forwardLocked(now)
		return
	}
	if now.Sub(r.lastAt) >= Interval {
		r.forwardLocked(now)
	}
}

func (r *Reporter) forwardLocked(now time.Time) {
	s := r.cur
	s.V, s.Kind, s.TS = 1, r.kind, now.Unix()
	if dt := now.Sub(r.lastAt); dt >= Interval/2 && s.Done.Bytes >= r.lastBytes {
		rate := uint64(float64(s.Done.Bytes-r.lastBytes) / dt.Seconds())
		r.lastRate = &rate
		r.lastAt, r.lastBytes = now, s.Done.Bytes
	} else if dt >= Interval/2 || s.Done.Bytes < r.lastBytes {
		r.lastAt, r.lastBytes = now, s.Done.Bytes
	}
	if r.lastRate != nil {
		rate := *r.lastRate
		s.RateBPS = &rate
		if s.Total != nil && rate > 0 && s.Total.Bytes > s.Done.Bytes {
			eta := (s.Total.Bytes - s.Done.Bytes + rate - 1) / rate
			s.ETASeconds = &eta
		} else if s.Total != nil && s.Done.Bytes >= s.Total.Bytes {
			var zero uint64
			s.ETASeconds = &zero
		}
	}
	r.dirty = false
	if r.sink != nil {
		r.sink(s)
	}
}

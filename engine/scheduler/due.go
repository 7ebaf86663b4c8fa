package scheduler

import (
	"hash/fnv"
	"time"
)

// Missed-run policies.
const (
	MissedRunOnce = "run_once"
	MissedSkip    = "skip"
)

// Action is what to do with a job at a given instant.
type Action int

const (
	// Wait: nothing is due; look again at Decision.Next.
	Wait Action = iota
	// Fire: enqueue a run (Source) and record ScheduledAt as the job's last scheduled instant.
	Fire
	// Skip: record ScheduledAt without a run (missed triggers under the skip policy).
	Skip
	// CatchUp: triggers were missed; fire one catch-up run at CatchUpAt.
	CatchUp
)

func (a Action) String() string {
	return [...]string{"wait", "fire", "skip", "catch_up"}[a]
}

// Decision is the outcome of Decide.
type Decision struct {
	Action      Action
	Source      string    // Fire: "schedule" or "catch_up"
	ScheduledAt time.Time // Fire, Skip: the latest trigger instant at or before now
	CatchUpAt   time.Time // CatchUp: when the catch-up run fires
	Next        time.Time // Wait, CatchUp: when to look at the job again; zero: never
}

// Nexter is a compiled schedule: the first trigger instant strictly after a time.
type Nexter interface {
	Next(after time.Time) time.Time
}

// Decide is the pure core of the scheduler: what is due for one job at now.
//
// base is the instant from which the job's triggers count (its last scheduled trigger, or when
// it was created, changed or unarchived, whichever is latest); catchUpAt is a catch-up already
// planned (zero: none). A trigger that is due and less than grace old fires normally (source
// "schedule"), and covers any older missed ones: a job never fires twice for one wake. When every
// due trigger is older than grace, the Hub was down, asleep or its clock jumped: with policy
// "skip" they are recorded without a run; with "run_once" (the default) one catch-up run fires at
// now+jitter (jitter spreads the catch-ups of many jobs after a restart). Computing from base, not
// from now, is what keeps a backwards clock step from firing a trigger twice.
func Decide(s Nexter, policy string, base, catchUpAt time.Time, grace, jitter time.Duration, now time.Time) Decision {
	first := s.Next(base)
	if first.IsZero() || first.After(now) {
		return Decision{Action: Wait, Next: first}
	}
	latest := latestDue(s, first, now)
	if now.Sub(latest) < grace {
		return Decision{Action: Fire, Source: "schedule", ScheduledAt: latest}
	}
	if policy == MissedSkip {
		return Decision{Action: Skip, ScheduledAt: latest}
	}
	following := s.Next(latest)
	if catchUpAt.IsZero() {
		at := now.Add(jitter)
		return Decision{Action: CatchUp, CatchUpAt: at, Next: earliest(at, following)}
	}
	if !now.Before(catchUpAt) {
		return Decision{Action: Fire, Source: "catch_up", ScheduledAt: latest}
	}
	return Decision{Action: Wait, Next: earliest(catchUpAt, following)}
}

// latestDue returns the latest trigger at or before now, given a due trigger first <= now. After a
// long outage there may be many; Next is monotonic, so a binary search over whole seconds finds
// the last one in about log2(outage seconds) steps instead of walking them all.
func latestDue(s Nexter, first, now time.Time) time.Time {
	if n := s.Next(first); n.IsZero() || n.After(now) {
		return first // the common case: exactly one trigger is due
	}
	lo, hi := first.Unix(), now.Unix() // Next(lo) <= now < Next(hi)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if s.Next(time.Unix(mid, 0)).After(now) {
			hi = mid
		} else {
			lo = mid
		}
	}
	if t := s.Next(time.Unix(lo, 0)); !t.After(now) {
		return t
	}
	return time.Unix(lo, 0)
}

func earliest(a, b time.Time) time.Time {
	if b.IsZero() || (!a.IsZero() && a.Before(b)) {
		return a
	}
	return b
}

// CatchUpJitter is the delay of a job's catch-up run after the scheduler notices missed triggers:
// a fixed fraction of max derived from the job id, so that many jobs spread out after a restart
// and a test can compute each one.
func CatchUpJitter(jobID string, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(jobID))
	return time.Duration(h.Sum64() % uint64(max))
}

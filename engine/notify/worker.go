package notify

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/bastion-backup/bastion/storage"
)

// maxSleep caps a sleep while something is pending, so that a suspend/resume or an NTP step is
// noticed. With nothing pending the worker sleeps until woken.
const maxSleep = 5 * time.Minute

// dbRetry is the pause after a database error in the loop (also ended early by Wake).
const dbRetry = 5 * time.Second

// Run is the delivery worker. It recovers rows a crash left 'sending', then claims due rows and
// delivers them until ctx ends; it waits for deliveries in flight before returning. It returns
// an error only if it cannot start.
func (s *Service) Run(ctx context.Context) error {
	n, err := s.db.Writer().RecoverSendingNotifications(ctx, s.clock.Now().Unix(), true)
	if err != nil {
		return err
	}
	if n > 0 {
		s.log.Info().Int64("notifications", n).Msg("re-queued notifications left sending by a previous run")
	}
	w := &worker{s: s, inflight: map[string]int64{}, buckets: map[string]*bucket{},
		done: make(chan delivery, s.conc)}

	timer := s.clock.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for first := true; ; first = false {
		if !first {
			s.hookMu.Lock()
			s.loops++
			s.hookMu.Unlock()
		}
		// tick computes its sleep from the time it started; arm the timer for that absolute
		// deadline, so time that passed during the tick (slow I/O, or a test moving the clock)
		// shortens the sleep instead of pushing the wake-up past the deadline.
		start := s.clock.Now()
		d, armed := w.tick(ctx)
		deadline := start.Add(d)
		if armed {
			timer.Reset(max(deadline.Sub(s.clock.Now()), 0))
		} else {
			timer.Stop()
		}
		if s.hookIdle != nil {
			s.hookIdle(idleReport{deadline: deadline, armed: armed, inflight: len(w.inflight), wakePending: len(s.wake) > 0})
		}
		select {
		case <-ctx.Done():
			w.wg.Wait()
			return nil
		case <-s.wake:
		case dl := <-w.done:
			w.finished(dl)
		case <-timer.C():
		}
	}
}

// wakeups is how many times the loop has woken since Run started.
func (s *Service) wakeups() int64 {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	return s.loops
}

// idleReport is what the loop tells a test hook before it waits.
type idleReport struct {
	deadline    time.Time
	armed       bool
	inflight    int
	wakePending bool
}

// worker is the loop's state, owned by the Run goroutine.
type worker struct {
	s        *Service
	inflight map[string]int64   // destination key → lease (unix s) of its delivery in flight
	buckets  map[string]*bucket // per-destination token buckets
	done     chan delivery      // cap s.conc: a delivery never blocks on it
	wg       sync.WaitGroup
}

type delivery struct{ key string }

// tick recovers expired leases, starts deliveries while there is capacity, and returns how long
// to sleep (armed false: until woken).
func (w *worker) tick(ctx context.Context) (time.Duration, bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	s := w.s
	now := s.clock.Now()
	unix := now.Unix()
	if s.hookTick != nil {
		s.hookTick()
	}

	// After the recovery at start, every row 'sending' is one of ours, so their leases are known
	// here. A lease that ran out means a delivery is stuck past every timeout: its row goes back
	// to the queue (the destination stays blocked until the stuck attempt returns).
	if exp, ok := w.earliestLease(); ok && exp < unix {
		n, err := s.db.Writer().RecoverSendingNotifications(ctx, unix, false)
		if err != nil {
			return w.dbError(ctx, err)
		}
		for key, lease := range w.inflight {
			if lease < unix {
				w.inflight[key] = math.MaxInt64 // recovered: no longer a deadline to wake for
			}
		}
		s.log.Warn().Int64("notifications", n).Msg("re-queued notifications whose lease expired while sending")
	}

	for len(w.inflight) < s.conc {
		n, err := s.db.Writer().ClaimNotification(ctx, unix, unix+int64(s.lease/time.Second), w.blocked(now))
		if errors.Is(err, storage.ErrNotFound) {
			break
		}
		if err != nil {
			return w.dbError(ctx, err)
		}
		w.start(ctx, n, now)
	}

	var next time.Time
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if len(w.inflight) < s.conc {
		due, ok, err := s.db.Reader().NextNotificationDue(ctx, w.blocked(now))
		if err != nil {
			return w.dbError(ctx, err)
		}
		if ok {
			consider(time.Unix(due, 0))
		}
		// A destination held back only by its rate limit becomes claimable again.
		for key, b := range w.buckets {
			if _, busy := w.inflight[key]; !busy {
				if t := b.available(now, s.rateEvery); t.After(now) {
					consider(t)
				}
			}
		}
	}
	if exp, ok := w.earliestLease(); ok {
		consider(time.Unix(exp+1, 0))
	}
	if next.IsZero() {
		return 0, false
	}
	return min(max(next.Sub(now), 0), maxSleep), true
}

func (w *worker) dbError(ctx context.Context, err error) (time.Duration, bool) {
	if ctx.Err() == nil {
		w.s.log.Error().Err(err).Msg("notification queue")
	}
	return dbRetry, true
}

// blocked lists the destinations not to claim for now: a delivery in flight, or no token left.
func (w *worker) blocked(now time.Time) []string {
	var out []string
	for key := range w.inflight {
		out = append(out, key)
	}
	for key, b := range w.buckets {
		if _, busy := w.inflight[key]; busy {
			continue
		}
		if b.available(now, w.s.rateEvery).After(now) {
			out = append(out, key)
		} else if b.full(now, w.s.rateEvery, w.s.rateBurst) {
			delete(w.buckets, key) // nothing to remember
		}
	}
	return out
}

func (w *worker) start(ctx context.Context, n storage.Notification, now time.Time) {
	key := storage.DestinationKey(n.Channel, n.SecretName)
	w.inflight[key] = *n.LeaseUntil
	if w.s.rateEvery > 0 {
		b := w.buckets[key]
		if b == nil {
			b = &bucket{tokens: float64(w.s.rateBurst), at: now}
			w.buckets[key] = b
		}
		b.take(now, w.s.rateEvery, w.s.rateBurst)
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.s.deliver(ctx, n)
		w.done <- delivery{key: key}
	}()
}

func (w *worker) finished(d delivery) { delete(w.inflight, d.key) }

// earliestLease is the first lease expiry among deliveries in flight.
func (w *worker) earliestLease() (int64, bool) {
	best, ok := int64(math.MaxInt64), false
	for _, lease := range w.inflight {
		if lease < best {
			best, ok = lease, true
		}
	}
	return best, ok && best != math.MaxInt64
}

// bucket is a token bucket: burst tokens, refilled one per every.
type bucket struct {
	tokens float64
	at     time.Time
}

func (b *bucket) refill(now time.Time, every time.Duration, burst int) {
	if now.After(b.at) {
		b.tokens = math.Min(float64(burst), b.tokens+float64(now.Sub(b.at))/float64(every))
		b.at = now
	}
}

func (b *bucket) take(now time.Time, every time.Duration, burst int) {
	b.refill(now, every, burst)
	b.tokens--
}

// available is when the bucket next holds a whole token (without refilling past it).
func (b *bucket) available(now time.Time, every time.Duration) time.Time {
	tokens := b.tokens + float64(now.Sub(b.at))/float64(every)
	if tokens >= 1 {
		return now
	}
	return now.Add(time.Duration((1 - tokens) * float64(every)))
}

func (b *bucket) full(now time.Time, every time.Duration, burst int) bool {
	return b.tokens+float64(now.Sub(b.at))/float64(every) >= float64(burst)
}

// Package scheduler fires cron-scheduled jobs. One goroutine owns one timer and sleeps until the
// earliest next trigger over all jobs; job changes and shutdown wake it at once, and its sleep is
// capped (MaxSleep) so that a suspend or a clock step is noticed. Each job's expression is compiled
// once and cached until the job changes; its next trigger is computed from the previous scheduled
// instant, which is stored with the run it enqueues, in one transaction.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/internal/lograte"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/schedule"
	"github.com/bastion-backup/bastion/storage"
)

// Defaults of Config.
const (
	DefaultMaxSleep      = 5 * time.Minute
	DefaultGrace         = time.Minute
	DefaultCatchUpJitter = time.Minute
	// retryDelay is the pause before a failed database read or write is tried again.
	retryDelay = 5 * time.Second
	// fireBatch is how many due jobs share one transaction: 1,000 jobs due in the same minute
	// cost 16 commits, not 1,000.
	fireBatch = 64
)

// Enqueuer is the run queue as the scheduler uses it (runs.Service).
type Enqueuer interface {
	EnqueueTx(ctx context.Context, q storage.Q, job storage.Job, source string) (runs.Enqueued, error)
	Committed(e runs.Enqueued)
}

// Agents says whether an agent holds a connection to the Hub.
type Agents interface {
	Connected(agentID string) bool
}

// Config builds a Scheduler.
type Config struct {
	DB    *storage.DB
	Clock clock.Clock
	Log   zerolog.Logger
	Runs  Enqueuer
	// Agents decides whether an agent job's trigger enqueues a run; nil treats every agent as
	// offline. An offline agent runs its own cron and syncs its runs later, so the Hub records
	// the trigger without enqueueing.
	Agents Agents
	// MaxSleep caps a sleep so that clock jumps are noticed (default 5 min).
	MaxSleep time.Duration
	// Grace is how late a trigger may be and still fire as "schedule" (default 1 min); older
	// ones are missed and follow the job's missed-run policy.
	Grace time.Duration
	// CatchUpJitter bounds the per-job delay of a catch-up run (default 1 min).
	CatchUpJitter time.Duration
	// Observer is told how late each on-time trigger fired (metrics); nil: nobody.
	Observer Observer
}

// Observer watches triggers fire, for metrics. TriggerFired is called once a trigger that fired
// on schedule (source "schedule") was recorded, with how long after its due time the scheduler
// acted on it, by the scheduler's clock. Catch-up runs are late on purpose and not reported. It
// must not block.
type Observer interface {
	TriggerFired(jobID string, late time.Duration)
}

// Scheduler fires scheduled jobs. Create it with New, run Run once, and call JobChanged after any
// change to a job.
type Scheduler struct {
	db     *storage.DB
	clock  clock.Clock
	log    zerolog.Logger
	runs   Enqueuer
	agents Agents
	cfg    Config
	wake   chan struct{}
	cache  compileCache
	errLog lograte.Limiter

	mu      sync.Mutex
	dirty   map[string]struct{}
	reload  bool // reload every job (start, or after a failed load)
	entries map[string]*entry

	// pollEvery, when set, replaces sleeping until the next trigger with a fixed poll
	// (benchmark baseline only).
	pollEvery time.Duration
}

type entry struct {
	job       storage.Job // as last read; its updated_at and last_scheduled_at guard the write
	sched     *schedule.Schedule
	base      time.Time
	catchUpAt time.Time
	next      time.Time // when to look at the job again; zero: never
}

// New returns a scheduler; nothing runs until Run.
func New(cfg Config) *Scheduler {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.MaxSleep <= 0 {
		cfg.MaxSleep = DefaultMaxSleep
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.CatchUpJitter < 0 {
		cfg.CatchUpJitter = 0
	} else if cfg.CatchUpJitter == 0 {
		cfg.CatchUpJitter = DefaultCatchUpJitter
	}
	return &Scheduler{
		db: cfg.DB, clock: cfg.Clock, log: cfg.Log.With().Str("component", "scheduler").Logger(),
		runs: cfg.Runs, agents: cfg.Agents, cfg: cfg, wake: make(chan struct{}, 1),
		cache: compileCache{m: map[string]compiled{}},
		dirty: map[string]struct{}{}, reload: true, entries: map[string]*entry{},
	}
}

// JobChanged tells the scheduler that a job was created, changed, archived, unarchived or
// deleted. It wakes the loop, which re-reads that job.
func (s *Scheduler) JobChanged(jobID string) {
	s.mu.Lock()
	s.dirty[jobID] = struct{}{}
	s.mu.Unlock()
	s.cache.drop(jobID)
	s.Wake()
}

// Wake makes the loop look at its jobs now.
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run is the loop; it returns nil when ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	s.refresh(ctx)
	s.fireDue(ctx) // what fell due while the Hub was down: skips now, catch-ups planned
	t := s.clock.NewTimer(s.untilNext())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-t.C():
		}
		s.refresh(ctx)
		s.fireDue(ctx)
		t.Reset(s.untilNext()) // after the work; no draining on Go >= 1.23
	}
}

// untilNext is the sleep until the earliest time a job must be looked at, capped at MaxSleep
// (and 0 when something is overdue).
func (s *Scheduler) untilNext() time.Duration {
	if s.pollEvery > 0 {
		return s.pollEvery
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reload || len(s.dirty) > 0 {
		return retryDelay // a failed load is retried
	}
	d := s.cfg.MaxSleep
	for _, e := range s.entries {
		if e.next.IsZero() {
			continue
		}
		if w := e.next.Sub(now); w < d {
			d = w
		}
	}
	return max(d, 0)
}

// refresh re-reads the jobs that changed (every job on the first pass).
func (s *Scheduler) refresh(ctx context.Context) {
	s.mu.Lock()
	full := s.reload
	ids := make([]string, 0, len(s.dirty))
	for id := range s.dirty {
		ids = append(ids, id)
	}
	clear(s.dirty)
	s.mu.Unlock()

	if full {
		jobs, err := s.db.Reader().ListScheduledJobs(ctx)
		if err != nil {
			s.loopError(err, "load scheduled jobs")
			s.mu.Lock()
			for _, id := range ids {
				s.dirty[id] = struct{}{}
			}
			s.mu.Unlock()
			return
		}
		entries := map[string]*entry{}
		for _, j := range jobs {
			if e := s.newEntry(j, nil); e != nil {
				entries[j.ID] = e
			}
		}
		s.mu.Lock()
		s.entries, s.reload = entries, false
		s.mu.Unlock()
		s.log.Info().Int("jobs", len(entries)).Msg("scheduler loaded its jobs")
		return
	}
	for _, id := range ids {
		j, err := s.db.Reader().GetJob(ctx, id)
		s.mu.Lock()
		switch {
		case errors.Is(err, storage.ErrNotFound):
			delete(s.entries, id)
		case err != nil:
			s.dirty[id] = struct{}{}
		case j.Schedule == nil || j.ArchivedAt != nil:
			delete(s.entries, id)
		default:
			if e := s.newEntry(j, s.entries[id]); e != nil {
				s.entries[id] = e
			} else {
				delete(s.entries, id)
			}
		}
		s.mu.Unlock()
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.loopError(err, "load job "+id)
		}
	}
}

// newEntry builds the state of a scheduled job; prev keeps a planned catch-up when the job did
// not change. It returns nil for a job whose schedule cannot be compiled (validation prevents
// that; an old database might not).
func (s *Scheduler) newEntry(j storage.Job, prev *entry) *entry {
	sched, err := s.cache.get(j)
	if err != nil {
		s.log.Warn().Err(err).Str("job_id", j.ID).Msg("job has an unusable schedule; it will not fire")
		return nil
	}
	// Triggers count from the later of the last one acted on and the moment the current schedule
	// took effect — never from updated_at: an unrelated edit saved just as a trigger falls due
	// must not make it look already past.
	base := time.Unix(j.ScheduleBaselineAt, 0)
	if j.LastScheduledAt != nil && *j.LastScheduledAt > j.ScheduleBaselineAt {
		base = time.Unix(*j.LastScheduledAt, 0)
	}
	e := &entry{job: j, sched: sched, base: base, next: sched.Next(base)}
	if prev != nil && prev.base.Equal(base) && prev.job.UpdatedAt == j.UpdatedAt {
		e.catchUpAt = prev.catchUpAt
		e.next = earliest(prev.next, e.next)
	}
	return e
}

type fire struct {
	e   *entry
	d   Decision
	at  time.Time // when the scheduler decided to fire
	enq *runs.Enqueued
	ok  bool
}

// fireDue acts on every job whose next look is due.
func (s *Scheduler) fireDue(ctx context.Context) {
	now := s.clock.Now()
	var due []*fire
	s.mu.Lock()
	for _, e := range s.entries {
		if e.next.IsZero() || e.next.After(now) {
			continue
		}
		d := Decide(e.sched, e.job.MissedRunPolicy, e.base, e.catchUpAt, s.cfg.Grace,
			CatchUpJitter(e.job.ID, s.cfg.CatchUpJitter), now)
		switch d.Action {
		case Wait:
			e.next = d.Next
		case CatchUp:
			e.catchUpAt, e.next = d.CatchUpAt, d.Next
			s.log.Info().Str("job_id", e.job.ID).Time("catch_up_at", d.CatchUpAt).
				Msg("job missed triggers while the Hub was away; one catch-up run is planned")
		default:
			due = append(due, &fire{e: e, d: d, at: now})
		}
	}
	s.mu.Unlock()

	for len(due) > 0 {
		n := min(len(due), fireBatch)
		s.commit(ctx, due[:n])
		due = due[n:]
	}
}

// commit records a batch of fires in one transaction, or each alone if the batch fails.
func (s *Scheduler) commit(ctx context.Context, batch []*fire) {
	err := s.db.Write(ctx, func(q storage.Q) error {
		for _, f := range batch {
			if err := s.apply(ctx, q, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && len(batch) > 1 {
		for _, f := range batch {
			s.commit(ctx, []*fire{f})
		}
		return
	}
	s.mu.Lock()
	for _, f := range batch {
		e := f.e
		switch {
		case err != nil:
			s.loopError(err, "fire job "+e.job.ID)
			e.next = s.clock.Now().Add(retryDelay)
		case !f.ok: // the job changed under us: read it again
			s.dirty[e.job.ID] = struct{}{}
		default:
			at := f.d.ScheduledAt.Unix()
			e.job.LastScheduledAt = &at
			e.base, e.catchUpAt = f.d.ScheduledAt, time.Time{}
			e.next = e.sched.Next(e.base)
		}
	}
	s.mu.Unlock()
	if err != nil {
		return
	}
	for _, f := range batch {
		if f.enq != nil {
			s.runs.Committed(*f.enq)
		}
		if f.ok && s.cfg.Observer != nil && f.d.Action == Fire && f.d.Source == runs.SourceSchedule {
			s.cfg.Observer.TriggerFired(f.e.job.ID, max(f.at.Sub(f.d.ScheduledAt), 0))
		}
	}
}

// apply records one fire: the trigger instant, guarded against a concurrent change of the job,
// and for Fire the run, unless the job belongs to an agent that is not connected.
func (s *Scheduler) apply(ctx context.Context, q storage.Q, f *fire) error {
	f.enq, f.ok = nil, false
	j := f.e.job
	ok, err := q.MarkJobScheduled(ctx, j.ID, j.UpdatedAt, j.LastScheduledAt, f.d.ScheduledAt.Unix())
	if err != nil || !ok {
		return err
	}
	f.ok = true
	if f.d.Action != Fire {
		return nil
	}
	if j.AgentID != nil && (s.agents == nil || !s.agents.Connected(*j.AgentID)) {
		return nil
	}
	// A revoked agent never runs anything again: the trigger is recorded (above), no run is
	// written. Checked in this transaction, so a revocation cannot slip in between.
	if err := q.EnsureAgentNotRevoked(ctx, j.AgentID); errors.Is(err, storage.ErrAgentRevoked) {
		return nil
	} else if err != nil {
		return fmt.Errorf("fire job %s: %w", j.ID, err)
	}
	enq, err := s.runs.EnqueueTx(ctx, q, j, f.d.Source)
	if err != nil {
		return fmt.Errorf("fire job %s: %w", j.ID, err)
	}
	f.enq = &enq
	return nil
}

func (s *Scheduler) loopError(err error, what string) {
	if s.errLog.Allow(s.clock.Now(), time.Minute) {
		s.log.Error().Err(err).Msg(what + "; retrying")
	}
}

// NextRunAt is when a job fires next as the scheduler sees it: a planned catch-up, else its next
// trigger after now. Nil for a manual or archived job (or one whose schedule cannot compile).
func (s *Scheduler) NextRunAt(job storage.Job, now time.Time) *time.Time {
	if job.Schedule == nil || job.ArchivedAt != nil {
		return nil
	}
	s.mu.Lock()
	e := s.entries[job.ID]
	if e != nil && !e.catchUpAt.IsZero() && e.job.UpdatedAt == job.UpdatedAt {
		at := e.catchUpAt
		s.mu.Unlock()
		return &at
	}
	s.mu.Unlock()
	sched, err := s.cache.get(job)
	if err != nil {
		return nil
	}
	base := now
	if job.LastScheduledAt != nil && time.Unix(*job.LastScheduledAt, 0).After(base) {
		base = time.Unix(*job.LastScheduledAt, 0)
	}
	t := sched.Next(base)
	if t.IsZero() {
		return nil
	}
	return &t
}

// compileCache holds each job's compiled schedule until the job changes.
type compileCache struct {
	mu sync.Mutex
	m  map[string]compiled
}

type compiled struct {
	expr, tz string
	sched    *schedule.Schedule
}

func (c *compileCache) get(j storage.Job) (*schedule.Schedule, error) {
	if j.Schedule == nil {
		return nil, fmt.Errorf("job %s has no schedule", j.ID)
	}
	c.mu.Lock()
	hit, ok := c.m[j.ID]
	c.mu.Unlock()
	if ok && hit.expr == *j.Schedule && hit.tz == j.ScheduleTimezone {
		return hit.sched, nil
	}
	loc, err := schedule.LoadLocation(j.ScheduleTimezone)
	if err != nil {
		return nil, fmt.Errorf("compile schedule of job %s: %w", j.ID, err)
	}
	sched, err := schedule.Parse(*j.Schedule, loc)
	if err != nil {
		return nil, fmt.Errorf("compile schedule of job %s: %w", j.ID, err)
	}
	c.mu.Lock()
	c.m[j.ID] = compiled{expr: *j.Schedule, tz: j.ScheduleTimezone, sched: sched}
	c.mu.Unlock()
	return sched, nil
}

func (c *compileCache) drop(jobID string) {
	c.mu.Lock()
	delete(c.m, jobID)
	c.mu.Unlock()
}

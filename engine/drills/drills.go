// Package drills runs scheduled verification (restore drills) of jobs' latest snapshots.
//
// A job's drill schedule fires like a backup trigger (the scheduler's Decide: same DST rules, a
// missed trigger caught up once after a jitter). A trigger marks the drill pending in
// job_verification, together with the trigger instant, so a drill waiting to start survives a
// restart. Pending drills start as operations (kind verify) on the node that reaches the job's
// target — its agent for an agent job, the Hub otherwise — once no backup of the job runs and the
// target has a free drill slot (engine/jobgate); a backup of the job waits while its drill runs.
// When a drill ends, the job's last_verified_* are recorded in the same transaction, and a failed
// drill queues a verify_failed notification.
//
// One goroutine owns one timer and sleeps until the next trigger, a planned catch-up or a retry
// of a blocked drill; job changes, backup ends, drill ends and agent connections wake it.
package drills

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/internal/lograte"
	"github.com/bastion-backup/bastion/engine/jobgate"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/schedule"
	"github.com/bastion-backup/bastion/engine/scheduler"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/storage"
)

// Sources of a drill, on its start event.
const (
	SourceSchedule = "schedule"
	SourceCatchUp  = "catch_up"
	SourceManual   = "manual"
)

// Defaults of Config.
const (
	DefaultMaxSleep = 5 * time.Minute
	// DefaultRetry is how soon a drill that could not start (its job's backup runs, its target's
	// slots are taken, its agent is away) is looked at again if nothing wakes the loop first.
	DefaultRetry = time.Minute
	// pendingBatch bounds the pending drills looked at per pass.
	pendingBatch = 100
)

// Operations is the operations service as drills use it.
type Operations interface {
	SnapshotTarget(ctx context.Context, runID string) (targets.RunTarget, error)
	StartDrill(ctx context.Context, req operations.DrillRequest) (storage.Operation, error)
	OnFinished(in operations.FinishHook, after func(op storage.Operation))
}

// Notifier queues the notifications of a failed drill (engine/notify.Service).
type Notifier interface {
	EnqueueVerifyFailed(ctx context.Context, q storage.Q, op storage.Operation, runID, jobSpecJSON string) (int, error)
	Wake()
}

// Agents says whether an agent is connected.
type Agents interface {
	Connected(agentID string) bool
}

// Config builds a Service.
type Config struct {
	DB       *storage.DB
	Clock    clock.Clock
	Log      zerolog.Logger
	Ops      Operations
	Gate     *jobgate.Gate
	Notifier Notifier // nil: failed drills are not notified
	Agents   Agents   // nil: every agent is away
	// Grace, CatchUpJitter and MaxSleep mean what they mean for the backup scheduler.
	Grace         time.Duration
	CatchUpJitter time.Duration
	MaxSleep      time.Duration
	Retry         time.Duration
}

// Service schedules and starts drills. Create it with New (which hooks it into the operations
// service: call New before the operations service's Recover), then supervise Run.
type Service struct {
	cfg    Config
	db     *storage.DB
	clock  clock.Clock
	log    zerolog.Logger
	ops    Operations
	gate   *jobgate.Gate
	wake   chan struct{}
	errLog lograte.Limiter

	mu      sync.Mutex
	reload  bool
	dirty   map[string]struct{}
	entries map[string]*entry
	running map[string]func() // operation id -> gate release
	blocked time.Time         // when to look again at pending drills that could not start

	// hookPass, a test hook set before Run, is told after every pass.
	hookPass func()
}

type entry struct {
	row       storage.ScheduledVerification
	sched     *schedule.Schedule
	base      time.Time
	catchUpAt time.Time
	next      time.Time
}

// New returns a Service and registers its operation hooks.
func New(cfg Config) *Service {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Grace <= 0 {
		cfg.Grace = scheduler.DefaultGrace
	}
	if cfg.CatchUpJitter < 0 {
		cfg.CatchUpJitter = 0
	} else if cfg.CatchUpJitter == 0 {
		cfg.CatchUpJitter = scheduler.DefaultCatchUpJitter
	}
	if cfg.MaxSleep <= 0 {
		cfg.MaxSleep = DefaultMaxSleep
	}
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultRetry
	}
	if cfg.Gate == nil {
		cfg.Gate = jobgate.New(0)
	}
	s := &Service{
		cfg: cfg, db: cfg.DB, clock: cfg.Clock, log: cfg.Log.With().Str("component", "drills").Logger(),
		ops: cfg.Ops, gate: cfg.Gate, wake: make(chan struct{}, 1),
		reload: true, dirty: map[string]struct{}{}, entries: map[string]*entry{}, running: map[string]func(){},
	}
	cfg.Ops.OnFinished(s.onFinished, s.afterFinished)
	return s
}

// Wake makes the loop look at due and pending drills now (a backup ended, an agent connected).
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// JobChanged re-reads a job's drill schedule (created, edited, archived, deleted).
func (s *Service) JobChanged(jobID string) {
	s.mu.Lock()
	s.dirty[jobID] = struct{}{}
	s.mu.Unlock()
	s.Wake()
}

// Request queues a drill of the job now ("run drill"); it starts as soon as it may.
func (s *Service) Request(ctx context.Context, jobID string) error {
	err := s.db.Write(ctx, func(q storage.Q) error {
		j, err := q.GetJob(ctx, jobID)
		if err != nil {
			return err
		}
		if j.ArchivedAt != nil {
			return ErrJobArchived
		}
		if _, err := q.LatestSnapshotRun(ctx, jobID); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return ErrNoSnapshot
			}
			return err
		}
		return q.RequestVerification(ctx, jobID, SourceManual, s.clock.Now().Unix())
	})
	if err == nil {
		s.Wake()
	}
	return err
}

// Errors of Request.
var (
	ErrJobArchived = errors.New("job is archived")
	ErrNoSnapshot  = errors.New("the job has no snapshot to verify yet")
)

// Run is the loop; it returns nil when ctx ends.
func (s *Service) Run(ctx context.Context) error {
	s.adoptRunning(ctx)
	t := s.clock.NewTimer(0)
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
		s.dispatch(ctx)
		t.Reset(s.untilNext())
		if s.hookPass != nil {
			s.hookPass() // after the timer is armed, so a test may move the clock
		}
	}
}

// adoptRunning takes the gate for drills a previous process left running on agents (they still
// owe their result), and forgets those that ended meanwhile.
func (s *Service) adoptRunning(ctx context.Context) {
	rows, err := s.db.Reader().ListRunningVerifications(ctx)
	if err != nil {
		s.log.Error().Err(err).Msg("load running drills")
		return
	}
	for jobID, opID := range rows {
		op, err := s.db.Reader().GetOperation(ctx, opID)
		if err == nil && op.Status == storage.OperationRunning && op.SubjectID != nil {
			key := ""
			if rt, err := s.ops.SnapshotTarget(ctx, *op.SubjectID); err == nil {
				key = TargetKey(rt)
			}
			s.mu.Lock()
			s.running[opID] = s.gate.Hold(jobID, key)
			s.mu.Unlock()
			continue
		}
		if err := s.db.Writer().ReleaseVerification(ctx, jobID, opID); err != nil {
			s.log.Warn().Err(err).Str("job_id", jobID).Msg("release a drill that ended while the Hub was away")
		}
	}
}

func (s *Service) untilNext() time.Duration {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reload || len(s.dirty) > 0 {
		return s.cfg.Retry
	}
	d := s.cfg.MaxSleep
	for _, e := range s.entries {
		if !e.next.IsZero() {
			d = min(d, e.next.Sub(now))
		}
	}
	if !s.blocked.IsZero() {
		d = min(d, s.blocked.Sub(now))
	}
	return max(d, 0)
}

// refresh re-reads the drill schedules that changed (all of them on the first pass).
func (s *Service) refresh(ctx context.Context) {
	s.mu.Lock()
	full := s.reload
	ids := make([]string, 0, len(s.dirty))
	for id := range s.dirty {
		ids = append(ids, id)
	}
	clear(s.dirty)
	s.mu.Unlock()
	if full {
		rows, err := s.db.Reader().ListScheduledVerifications(ctx)
		if err != nil {
			s.loopError(err, "load drill schedules")
			s.mu.Lock()
			for _, id := range ids {
				s.dirty[id] = struct{}{}
			}
			s.mu.Unlock()
			return
		}
		entries := map[string]*entry{}
		for _, r := range rows {
			if e := s.newEntry(r, nil); e != nil {
				entries[r.JobID] = e
			}
		}
		s.mu.Lock()
		s.entries, s.reload = entries, false
		s.mu.Unlock()
		return
	}
	for _, id := range ids {
		r, err := s.db.Reader().GetScheduledVerification(ctx, id)
		s.mu.Lock()
		switch {
		case errors.Is(err, storage.ErrNotFound):
			delete(s.entries, id)
		case err != nil:
			s.dirty[id] = struct{}{}
		default:
			if e := s.newEntry(r, s.entries[id]); e != nil {
				s.entries[id] = e
			} else {
				delete(s.entries, id)
			}
		}
		s.mu.Unlock()
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.loopError(err, "load drill schedule of job "+id)
		}
	}
}

func (s *Service) newEntry(r storage.ScheduledVerification, prev *entry) *entry {
	v, err := decodeConfig(r.ConfigJSON)
	if err != nil || v == nil {
		s.log.Warn().Err(err).Str("job_id", r.JobID).Msg("job has an unusable drill schedule; it will not fire")
		return nil
	}
	loc, err := schedule.LoadLocation(v.Timezone)
	if err != nil {
		s.log.Warn().Err(err).Str("job_id", r.JobID).Msg("job has an unusable drill timezone; it will not fire")
		return nil
	}
	sched, err := schedule.Parse(v.Schedule, loc)
	if err != nil {
		s.log.Warn().Err(err).Str("job_id", r.JobID).Msg("job has an unusable drill schedule; it will not fire")
		return nil
	}
	base := time.Unix(r.BaselineAt, 0)
	if r.LastScheduledAt != nil && *r.LastScheduledAt > r.BaselineAt {
		base = time.Unix(*r.LastScheduledAt, 0)
	}
	e := &entry{row: r, sched: sched, base: base, next: sched.Next(base)}
	if prev != nil && prev.base.Equal(base) && prev.row.BaselineAt == r.BaselineAt {
		e.catchUpAt = prev.catchUpAt
		if !prev.next.IsZero() && prev.next.Before(e.next) {
			e.next = prev.next
		}
	}
	return e
}

func decodeConfig(raw *string) (*jobspec.Verification, error) {
	if raw == nil {
		return nil, nil
	}
	var v jobspec.Verification
	if err := json.Unmarshal([]byte(*raw), &v); err != nil {
		return nil, fmt.Errorf("decode drill schedule: %w", err)
	}
	return &v, nil
}

// fireDue marks pending every drill whose trigger is due (missed triggers: one catch-up).
func (s *Service) fireDue(ctx context.Context) {
	now := s.clock.Now()
	type fire struct {
		e *entry
		d scheduler.Decision
	}
	var due []fire
	s.mu.Lock()
	for _, e := range s.entries {
		if e.next.IsZero() || e.next.After(now) {
			continue
		}
		d := scheduler.Decide(e.sched, scheduler.MissedRunOnce, e.base, e.catchUpAt, s.cfg.Grace,
			scheduler.CatchUpJitter(e.row.JobID, s.cfg.CatchUpJitter), now)
		switch d.Action {
		case scheduler.Wait:
			e.next = d.Next
		case scheduler.CatchUp:
			e.catchUpAt, e.next = d.CatchUpAt, d.Next
			s.log.Info().Str("job_id", e.row.JobID).Time("catch_up_at", d.CatchUpAt).
				Msg("job missed drill triggers while the Hub was away; one catch-up drill is planned")
		default:
			due = append(due, fire{e, d})
		}
	}
	s.mu.Unlock()
	for _, f := range due {
		r := f.e.row
		ok, err := s.db.Writer().MarkVerificationDue(ctx, r.JobID, r.BaselineAt, r.LastScheduledAt,
			f.d.ScheduledAt.Unix(), f.d.Action == scheduler.Fire, f.d.Source, now.Unix())
		s.mu.Lock()
		switch {
		case err != nil:
			s.loopError(err, "fire drill of job "+r.JobID)
			f.e.next = now.Add(s.cfg.Retry)
		case !ok:
			s.dirty[r.JobID] = struct{}{}
		default:
			at := f.d.ScheduledAt.Unix()
			f.e.row.LastScheduledAt = &at
			f.e.base, f.e.catchUpAt = f.d.ScheduledAt, time.Time{}
			f.e.next = f.e.sched.Next(f.e.base)
			s.log.Info().Str("job_id", r.JobID).Str("source", f.d.Source).Msg("drill due")
		}
		s.mu.Unlock()
	}
}

// dispatch starts the pending drills that may start now.
func (s *Service) dispatch(ctx context.Context) {
	s.mu.Lock()
	s.blocked = time.Time{}
	s.mu.Unlock()
	pending, err := s.db.Reader().ListPendingVerifications(ctx, pendingBatch)
	if err != nil {
		s.loopError(err, "list pending drills")
		s.retrySoon()
		return
	}
	for _, p := range pending {
		if err := s.start(ctx, p); err != nil {
			s.loopError(err, "start drill of job "+p.JobID)
			s.retrySoon()
		}
	}
}

func (s *Service) retrySoon() {
	at := s.clock.Now().Add(s.cfg.Retry)
	s.mu.Lock()
	if s.blocked.IsZero() || at.Before(s.blocked) {
		s.blocked = at
	}
	s.mu.Unlock()
}

// start starts one pending drill, or leaves it pending when it must wait.
func (s *Service) start(ctx context.Context, p storage.PendingVerification) error {
	log := s.log.With().Str("job_id", p.JobID).Logger()
	node := opener.HubNode
	if p.Job.AgentID != nil {
		node = *p.Job.AgentID
		if s.cfg.Agents == nil || !s.cfg.Agents.Connected(node) {
			s.retrySoon()
			return nil // its agent's connection wakes us
		}
	}
	runID, err := s.db.Reader().LatestSnapshotRun(ctx, p.JobID)
	if errors.Is(err, storage.ErrNotFound) {
		log.Info().Msg("drill due but the job has no snapshot yet; skipped")
		return s.db.Writer().DropPendingVerification(ctx, p.JobID)
	}
	if err != nil {
		return err
	}
	rt, err := s.ops.SnapshotTarget(ctx, runID)
	if err != nil {
		return err
	}
	key := TargetKey(rt)
	release, busy, err := s.gate.TryDrill(ctx, p.JobID, key, func(ctx context.Context) (bool, error) {
		return s.db.Reader().HasRunningRun(ctx, p.JobID)
	})
	if err != nil {
		return err
	}
	if busy != "" {
		log.Debug().Str("busy", busy).Msg("drill waits")
		if busy == jobgate.BusyBackup {
			s.retrySoon() // the backup's end wakes us; this is the safety net
		}
		return nil
	}
	opID := uuid.NewString()
	ok, err := s.db.Writer().StartVerification(ctx, p.JobID, opID)
	if err != nil || !ok {
		release()
		return err
	}
	s.mu.Lock()
	s.running[opID] = release
	s.mu.Unlock()
	v, _ := decodeConfig(p.ConfigJSON)
	req := operations.DrillRequest{OperationID: opID, RunID: runID, Node: node, Mode: jobspec.VerifyModeVerify,
		Source: SourceManual}
	if p.PendingSource != nil {
		req.Source = *p.PendingSource
	}
	if v != nil {
		req.Mode = v.Mode
		if v.Mode == jobspec.VerifyModeRestoreTest {
			req.SampleFiles = v.SampleFiles
		}
	}
	op, err := s.ops.StartDrill(ctx, req)
	if err != nil {
		// Nothing was stored (the agent went away, the snapshot vanished): the drill is dropped,
		// as a backup trigger of an offline agent is, and the next trigger tries again.
		s.releaseOp(opID)
		log.Warn().Err(err).Msg("could not start the drill; it is dropped until the next trigger")
		return s.db.Writer().ReleaseVerification(ctx, p.JobID, opID)
	}
	log.Info().Str("operation_id", op.ID).Str("node_id", node).Str("mode", req.Mode).Str("run_id", runID).Msg("drill started")
	return nil
}

func (s *Service) releaseOp(opID string) bool {
	s.mu.Lock()
	release := s.running[opID]
	delete(s.running, opID)
	s.mu.Unlock()
	if release != nil {
		release()
	}
	return release != nil
}

// onFinished records the end of a drill, or of a verify of a job's latest snapshot, on the job,
// and queues a failed drill's notifications, in the operation's ending transaction.
func (s *Service) onFinished(ctx context.Context, q storage.Q, op storage.Operation) error {
	if op.Kind != storage.OperationVerify || op.SubjectID == nil {
		return nil
	}
	run, err := q.GetRun(ctx, *op.SubjectID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	drill := false
	if v, err := q.GetJobVerification(ctx, run.JobID); err == nil {
		drill = v.RunningOpID != nil && *v.RunningOpID == op.ID
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if !drill {
		// A verify started by hand proves the job only when it checked the latest snapshot.
		latest, err := q.LatestSnapshotRun(ctx, run.JobID)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && latest != run.ID) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	ended := s.clock.Now().Unix()
	if op.EndedAt != nil {
		ended = *op.EndedAt
	}
	if err := q.RecordVerification(ctx, run.JobID, op.ID, op.Status, ended); err != nil {
		return err
	}
	if drill && op.Status == storage.OperationFailed && s.cfg.Notifier != nil {
		job, err := q.GetJob(ctx, run.JobID)
		if err != nil {
			return err
		}
		if _, err := s.cfg.Notifier.EnqueueVerifyFailed(ctx, q, op, run.ID, job.SpecJSON); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) afterFinished(op storage.Operation) {
	if op.Kind != storage.OperationVerify {
		return
	}
	if s.releaseOp(op.ID) {
		s.Wake()
	}
	if op.Status == storage.OperationFailed && s.cfg.Notifier != nil {
		s.cfg.Notifier.Wake()
	}
}

// TargetKey names the storage a snapshot lives on, for the per-target drill limit: a directory
// of a node, or a WebDAV base URL (whoever's credential reads it).
func TargetKey(rt targets.RunTarget) string {
	cfg, err := all.Registry.ParseRedacted(rt.Target)
	if err == nil && cfg.Endpoint() != "" {
		return rt.Target.Type + ":" + cfg.Endpoint()
	}
	node := rt.NodeID
	if node == "" {
		node = opener.HubNode
	}
	dir, _ := all.Registry.LocalPathOf(rt.Target)
	return rt.Target.Type + ":" + node + ":" + dir
}

func (s *Service) loopError(err error, what string) {
	if s.errLog.Allow(s.clock.Now(), time.Minute) {
		s.log.Error().Err(err).Msg(what + "; retrying")
	}
}

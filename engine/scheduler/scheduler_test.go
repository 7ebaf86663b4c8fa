package scheduler

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

const spec = `{"v":1,"type":"filesystem","source":{"paths":["/srv/app"]},"target":{"type":"local_dir","base_dir":"/srv/bk"}}`

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type agentSet struct {
	mu sync.Mutex
	on map[string]bool
}

func (a *agentSet) Connected(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.on[id]
}

type testBundle struct {
	t      *testing.T
	ctx    context.Context
	db     *storage.DB
	clk    *clock.Fake
	runs   *runs.Service
	agents *agentSet
	s      *Scheduler
	stop   func()
	fired  firedLog
}

// firedLog is the Observer: the lateness of each trigger fired on schedule.
type firedLog struct {
	mu   sync.Mutex
	late []time.Duration
}

func (f *firedLog) TriggerFired(jobID string, late time.Duration) {
	f.mu.Lock()
	f.late = append(f.late, late)
	f.mu.Unlock()
}

func (f *firedLog) get() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.late...)
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	db := storagetest.Open(t)
	clk := clock.NewFake(epoch)
	log := zerolog.New(zerolog.NewTestWriter(t))
	b := &testBundle{t: t, ctx: context.Background(), db: db, clk: clk, agents: &agentSet{on: map[string]bool{}}}
	// The run queue is not running: fired runs stay queued, which is what these tests count.
	b.runs = runs.New(runs.Config{DB: db, Clock: clk, Log: log})
	b.s = New(Config{DB: db, Clock: clk, Log: log, Runs: b.runs, Agents: b.agents, Observer: &b.fired})
	return b
}

// start runs the loop and waits until it has armed its timer.
func (b *testBundle) start() {
	b.t.Helper()
	arms := b.clk.ArmCount()
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- b.s.Run(ctx) }()
	var once sync.Once
	b.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				b.t.Errorf("Run = %v", err)
			}
		})
	}
	b.t.Cleanup(b.stop)
	b.waitArm(arms)
}

func (b *testBundle) waitArm(before uint64) {
	b.t.Helper()
	if err := b.clk.WaitArmCount(b.t.Context(), before+1); err != nil {
		b.t.Fatal(err)
	}
}

// advanceTo moves the clock to t, which must be the loop's next deadline, and waits for the loop
// to act and re-arm.
func (b *testBundle) advanceTo(t time.Time) {
	b.t.Helper()
	d, ok := b.clk.NextDeadline()
	if !ok || !d.Equal(t) {
		b.t.Fatalf("next wake-up = %v (%v), want %v", d, ok, t)
	}
	arms := b.clk.ArmCount()
	b.clk.Set(t)
	b.waitArm(arms)
}

// advanceUntil steps the clock from wake-up to wake-up until target, which must itself be a
// wake-up: the loop may wake earlier (its sleep is capped) but never sleeps past a trigger.
func (b *testBundle) advanceUntil(target time.Time) {
	b.t.Helper()
	for b.clk.Now().Before(target) {
		d, ok := b.clk.NextDeadline()
		if !ok || d.After(target) {
			b.t.Fatalf("loop sleeps until %v (%v), past %v", d, ok, target)
		}
		b.advanceTo(d)
	}
}

func (b *testBundle) change(jobID string) {
	b.t.Helper()
	arms := b.clk.ArmCount()
	b.s.JobChanged(jobID)
	b.waitArm(arms)
}

func (b *testBundle) addJob(id, expr, zone, policy, overlap string, agent *string) storage.Job {
	b.t.Helper()
	j := storage.Job{ID: id, Name: id, AgentID: agent, Schedule: &expr, ScheduleTimezone: zone, OverlapPolicy: overlap,
		MissedRunPolicy: policy, SpecJSON: spec, CreatedAt: b.clk.Now().Unix(), UpdatedAt: b.clk.Now().Unix()}
	if agent != nil {
		if _, err := b.db.Writer().Exec(b.ctx, `INSERT OR IGNORE INTO agents(id, key_hash, created_at, updated_at) VALUES (?, randomblob(8), 1, 1)`, *agent); err != nil {
			b.t.Fatal(err)
		}
	}
	if err := b.db.Writer().InsertJob(b.ctx, j); err != nil {
		b.t.Fatal(err)
	}
	return j
}

type runRow struct {
	status, source string
	queuedAt       int64
}

func (b *testBundle) runsOf(jobID string) []runRow {
	b.t.Helper()
	rows, err := b.db.Reader().Query(b.ctx, `SELECT r.status, r.started_at, COALESCE(json_extract(e.fields_json, '$.source'), '')
		FROM runs r JOIN run_events e ON e.run_id = r.id AND e.seq = 1 WHERE r.job_id = ? ORDER BY r.started_at, r.rowid`, jobID)
	if err != nil {
		b.t.Fatal(err)
	}
	defer rows.Close()
	var out []runRow
	for rows.Next() {
		var r runRow
		if err := rows.Scan(&r.status, &r.queuedAt, &r.source); err != nil {
			b.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func (b *testBundle) lastScheduled(jobID string) int64 {
	b.t.Helper()
	j, err := b.db.Reader().GetJob(b.ctx, jobID)
	if err != nil {
		b.t.Fatal(err)
	}
	if j.LastScheduledAt == nil {
		return 0
	}
	return *j.LastScheduledAt
}

func TestFiresAtEachTriggerAndSleepsBetween(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addJob("j", "*/15 * * * *", "UTC", MissedRunOnce, runs.OverlapQueue, nil)
	b.start()
	fires := b.clk.Fires()
	for i, want := range []time.Time{epoch.Add(15 * time.Minute), epoch.Add(30 * time.Minute), epoch.Add(45 * time.Minute)} {
		b.advanceUntil(want)
		got := b.runsOf("j")
		if len(got) != i+1 || got[i].source != runs.SourceSchedule || got[i].queuedAt != want.Unix() {
			t.Fatalf("after %v: runs = %+v", want, got)
		}
		if b.lastScheduled("j") != want.Unix() {
			t.Fatalf("last_scheduled_at = %d, want %d", b.lastScheduled("j"), want.Unix())
		}
	}
	// 3 triggers plus the capped wake-ups at :05 :10 :20 :25 :35 :40, nothing else.
	if n := b.clk.Fires() - fires; n != 9 {
		t.Fatalf("timer fired %d times in 45 minutes, want 9", n)
	}
}

func TestJobChangesWakeTheLoopAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.start()
	if d, _ := b.clk.NextDeadline(); !d.Equal(epoch.Add(DefaultMaxSleep)) {
		t.Fatalf("idle sleep until %v, want the cap", d)
	}
	j := b.addJob("j", "0 13 * * *", "UTC", MissedRunOnce, runs.OverlapQueue, nil)
	b.change(j.ID)
	if d, _ := b.clk.NextDeadline(); !d.Equal(epoch.Add(DefaultMaxSleep)) {
		t.Fatalf("deadline %v, want the cap (the trigger is an hour away)", d)
	}
	// Edit: now every minute. The loop picks it up at once.
	if _, err := b.db.Writer().Exec(b.ctx, `UPDATE jobs SET schedule = '* * * * *' WHERE id = 'j'`); err != nil {
		t.Fatal(err)
	}
	b.change(j.ID)
	b.advanceUntil(epoch.Add(time.Minute))
	if n := len(b.runsOf("j")); n != 1 {
		t.Fatalf("runs = %d after the edited schedule's first trigger", n)
	}
	// Archive: it stops firing.
	if err := b.db.Writer().ArchiveJob(b.ctx, "j", epoch.Unix()); err != nil {
		t.Fatal(err)
	}
	b.change(j.ID)
	if d, _ := b.clk.NextDeadline(); !d.Equal(epoch.Add(time.Minute + DefaultMaxSleep)) {
		t.Fatalf("deadline after archive %v, want the idle cap", d)
	}
	b.advanceTo(epoch.Add(time.Minute + DefaultMaxSleep))
	if n := len(b.runsOf("j")); n != 1 {
		t.Fatalf("an archived job fired: %d runs", n)
	}
}

func TestMissedTriggersRunOnceAfterRestartWithJitter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	j := b.addJob("daily", "0 3 * * *", "UTC", MissedRunOnce, runs.OverlapQueue, nil)
	skip := b.addJob("skipper", "0 3 * * *", "UTC", MissedSkip, runs.OverlapQueue, nil)
	// The Hub was down for three days: last fired 2026-02-26 03:00, now 2026-03-01 12:00.
	last := time.Date(2026, 2, 26, 3, 0, 0, 0, time.UTC).Unix()
	for _, id := range []string{j.ID, skip.ID} {
		if _, err := b.db.Writer().Exec(b.ctx, `UPDATE jobs SET last_scheduled_at = ?, updated_at = ?, schedule_baseline_at = ? WHERE id = ?`, last, last-100, last-100, id); err != nil {
			t.Fatal(err)
		}
	}
	b.start()
	wantMissed := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC).Unix()
	if b.lastScheduled(skip.ID) != wantMissed || len(b.runsOf(skip.ID)) != 0 {
		t.Fatalf("skip policy: last_scheduled_at %d runs %d", b.lastScheduled(skip.ID), len(b.runsOf(skip.ID)))
	}
	catchUp := epoch.Add(CatchUpJitter(j.ID, DefaultCatchUpJitter))
	if len(b.runsOf(j.ID)) != 0 {
		t.Fatal("catch-up fired before its jitter")
	}
	b.advanceTo(catchUp)
	got := b.runsOf(j.ID)
	if len(got) != 1 || got[0].source != runs.SourceCatchUp || b.lastScheduled(j.ID) != wantMissed {
		t.Fatalf("catch-up: runs %+v, last_scheduled_at %d", got, b.lastScheduled(j.ID))
	}
	// A restart does not catch up again.
	b.stop()
	b.s = New(Config{DB: b.db, Clock: b.clk, Log: zerolog.Nop(), Runs: b.runs, Agents: b.agents})
	b.start()
	if d, _ := b.clk.NextDeadline(); !d.Equal(catchUp.Add(DefaultMaxSleep)) {
		t.Fatalf("after restart next wake %v", d)
	}
	if n := len(b.runsOf(j.ID)); n != 1 {
		t.Fatalf("restart fired again: %d runs", n)
	}
}

func TestClockJumpsNeitherLoseNorDoubleATrigger(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addJob("hourly", "0 * * * *", "UTC", MissedRunOnce, runs.OverlapQueue, nil)
	b.start()
	b.advanceUntil(epoch.Add(time.Hour))
	if n := len(b.runsOf("hourly")); n != 1 {
		t.Fatalf("runs at 13:00 = %d", n)
	}
	// NTP steps the clock back 40 minutes: 13:00 must not fire again when it comes round.
	arms := b.clk.ArmCount()
	b.clk.Set(epoch.Add(20 * time.Minute))
	b.s.Wake() // a wake-up for any reason; the timer's absolute deadline is later
	b.waitArm(arms)
	for b.clk.Now().Before(epoch.Add(time.Hour + 30*time.Minute)) {
		d, _ := b.clk.NextDeadline()
		b.advanceTo(d)
	}
	if n := len(b.runsOf("hourly")); n != 1 {
		t.Fatalf("after a backwards step: %d runs, want still 1", n)
	}
	// Suspend for hours: the loop's timer (its deadline passed long ago) fires on resume; the missed
	// triggers become one catch-up run, and the next regular one fires normally.
	resume := epoch.Add(5*time.Hour + 20*time.Minute)
	arms = b.clk.ArmCount()
	b.clk.Set(resume)
	b.waitArm(arms)
	if d, _ := b.clk.NextDeadline(); !d.Equal(resume.Add(CatchUpJitter("hourly", DefaultCatchUpJitter))) {
		t.Fatalf("catch-up planned for %v", d)
	}
	b.advanceUntil(epoch.Add(6 * time.Hour))
	got := b.runsOf("hourly")
	if len(got) != 3 || got[1].source != runs.SourceCatchUp || got[2].source != runs.SourceSchedule ||
		got[2].queuedAt != epoch.Add(6*time.Hour).Unix() {
		t.Fatalf("runs = %+v, want 13:00, one catch-up, 18:00", got)
	}
}

func TestOverlapAndAgentsOnTrigger(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a1, a2 := "a1", "a2"
	b.agents.on[a1] = true
	b.addJob("rej", "*/10 * * * *", "UTC", MissedRunOnce, runs.OverlapReject, nil)
	b.addJob("online", "*/10 * * * *", "UTC", MissedRunOnce, runs.OverlapQueue, &a1)
	b.addJob("offline", "*/10 * * * *", "UTC", MissedRunOnce, runs.OverlapQueue, &a2)
	b.start()
	b.advanceUntil(epoch.Add(20 * time.Minute))
	rej := b.runsOf("rej")
	if len(rej) != 2 || rej[0].status != storage.RunQueued || rej[1].status != storage.RunRejected {
		t.Fatalf("reject job runs = %+v, want queued then rejected (the first never ran)", rej)
	}
	if n := len(b.runsOf("online")); n != 2 {
		t.Fatalf("online agent job runs = %d", n)
	}
	if n := len(b.runsOf("offline")); n != 0 || b.lastScheduled("offline") != epoch.Add(20*time.Minute).Unix() {
		t.Fatalf("offline agent job: %d runs, last_scheduled_at %d", n, b.lastScheduled("offline"))
	}
}

// TestRevokedAgentJobsFireNothing: a job bound to a revoked agent writes no run at its triggers
// (no queued run that nothing could start, no rejected run every trigger), even while the agent's
// last socket is still open; the triggers are still recorded.
func TestRevokedAgentJobsFireNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a1 := "a1"
	b.agents.on[a1] = true
	b.addJob("revoked", "*/10 * * * *", "UTC", MissedRunOnce, runs.OverlapReject, &a1)
	if err := b.db.Writer().RevokeAgent(b.ctx, a1, epoch.Unix()); err != nil {
		t.Fatal(err)
	}
	b.start()
	b.advanceUntil(epoch.Add(30 * time.Minute))
	if got := b.runsOf("revoked"); len(got) != 0 {
		t.Fatalf("runs of a revoked agent's job: %+v", got)
	}
	if b.lastScheduled("revoked") != epoch.Add(30*time.Minute).Unix() {
		t.Fatalf("last_scheduled_at %d: triggers must still be recorded", b.lastScheduled("revoked"))
	}
}

func TestManyJobsIdleMinuteWakesAtMostOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	err := b.db.Write(b.ctx, func(q storage.Q) error {
		for i := range 500 {
			expr := "0 3 * * *"
			if err := q.InsertJob(b.ctx, storage.Job{ID: "j" + string(rune('a'+i%26)) + time.Duration(i).String(), Name: "x",
				Schedule: &expr, ScheduleTimezone: "Europe/Paris", OverlapPolicy: "queue", MissedRunPolicy: MissedRunOnce,
				SpecJSON: spec, CreatedAt: epoch.Unix(), UpdatedAt: epoch.Unix()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b.start()
	fires := b.clk.Fires()
	for range 60 {
		b.clk.Advance(time.Second)
	}
	if n := b.clk.Fires() - fires; n > 1 {
		t.Fatalf("%d wake-ups in an idle minute", n)
	}
}

// An edit that does not touch the schedule, stamped at the very second a trigger falls due (the
// scheduler is a little late, the user saves a rename), must not swallow that trigger; a change
// of schedule does restart the count from the edit.
func TestUnrelatedEditAtTriggerTimeKeepsTheTrigger(t *testing.T) {
	t.Parallel()
	b := setup(t)
	j := b.addJob("j", "*/15 * * * *", "UTC", MissedRunOnce, runs.OverlapQueue, nil)
	b.start()
	trigger := epoch.Add(15 * time.Minute)
	b.advanceUntil(epoch.Add(10 * time.Minute))

	j.Name, j.UpdatedAt = "renamed", trigger.Unix()
	if err := b.db.Writer().UpdateJob(b.ctx, j); err != nil {
		t.Fatal(err)
	}
	b.change("j")
	b.advanceUntil(trigger)
	if got := b.runsOf("j"); len(got) != 1 || got[0].queuedAt != trigger.Unix() {
		t.Fatalf("runs after a rename stamped at the trigger = %+v, want the trigger at %v", got, trigger)
	}

	// Changing the schedule counts from the change: 0 * * * * would have fired at 01:00 before
	// the edit's baseline only if missed triggers were counted from the old baseline.
	expr := "20 * * * *"
	j.Schedule, j.UpdatedAt = &expr, b.clk.Now().Unix()
	if err := b.db.Writer().UpdateJob(b.ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err := b.db.Reader().GetJob(b.ctx, "j")
	if err != nil || got.ScheduleBaselineAt != b.clk.Now().Unix() {
		t.Fatalf("baseline after a schedule change = %d (%v), want %d", got.ScheduleBaselineAt, err, b.clk.Now().Unix())
	}
}

// The observer (metrics' lateness histogram) hears how late each on-time trigger fired, by the
// scheduler's clock; a catch-up run after an outage is late on purpose and not reported.
func TestObserverHearsTheLatenessOfOnTimeTriggers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addJob("j", "*/15 * * * *", "UTC", MissedRunOnce, runs.OverlapQueue, nil)
	b.start()
	b.advanceUntil(epoch.Add(15 * time.Minute))
	// The loop wakes 20 s after the 30-minute trigger (a busy host): still on time, 20 s late.
	b.advanceUntil(epoch.Add(25 * time.Minute))
	arms := b.clk.ArmCount()
	b.clk.Set(epoch.Add(30*time.Minute + 20*time.Second))
	b.waitArm(arms)
	if got := b.fired.get(); len(got) != 2 || got[0] != 0 || got[1] != 20*time.Second {
		t.Fatalf("lateness observed = %v, want [0s 20s]", got)
	}
	// An outage: the 45-minute and later triggers are missed, one catch-up run follows.
	arms = b.clk.ArmCount()
	b.clk.Set(epoch.Add(2*time.Hour + 5*time.Minute))
	b.waitArm(arms)
	for i := 0; i < 5 && len(b.runsOf("j")) < 3; i++ {
		d, ok := b.clk.NextDeadline()
		if !ok {
			t.Fatal("loop is not sleeping")
		}
		b.advanceTo(d)
	}
	if r := b.runsOf("j"); len(r) != 3 || r[2].source != runs.SourceCatchUp {
		t.Fatalf("runs = %+v, want a catch-up run third", r)
	}
	if got := b.fired.get(); len(got) != 2 {
		t.Fatalf("lateness observed = %v: the catch-up run was reported", got)
	}
}

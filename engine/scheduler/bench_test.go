package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// insertJobs stores n jobs with expr (zones vary), counted from base.
func insertJobs(b *testing.B, db *storage.DB, n int, expr string, base time.Time) {
	b.Helper()
	ctx := context.Background()
	zones := []string{"UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe"}
	last := base.Unix()
	err := db.Write(ctx, func(q storage.Q) error {
		for i := range n {
			if err := q.InsertJob(ctx, storage.Job{ID: fmt.Sprintf("job-%05d", i), Name: "j", Schedule: &expr,
				ScheduleTimezone: zones[i%len(zones)], OverlapPolicy: runs.OverlapQueue, MissedRunPolicy: MissedRunOnce,
				LastScheduledAt: &last, SpecJSON: "{}", CreatedAt: last - 60, UpdatedAt: last - 60}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkIdleMinute: 10,000 cron jobs, none due in the next minute. The loop's timer wake-ups
// in each simulated minute (fake clock, Fires) are the figure wakeups/min: impl=scheduler sleeps
// until the earliest trigger (capped at MaxSleep), impl=poller is the 1-second poll it replaces.
// ns/op is the CPU spent simulating the minute.
func BenchmarkIdleMinute(b *testing.B) {
	for _, impl := range []string{"poller", "scheduler"} {
		b.Run("impl="+impl, func(b *testing.B) {
			db := storagetest.Open(b)
			start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			insertJobs(b, db, 10_000, "0 3 * * *", start) // next trigger: 03:00 local, hours away
			clk := clock.NewFake(start)
			rq := runs.New(runs.Config{DB: db, Clock: clk, Log: zerolog.Nop()})
			s := New(Config{DB: db, Clock: clk, Log: zerolog.Nop(), Runs: rq})
			if impl == "poller" {
				s.pollEvery = time.Second
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			arms := clk.ArmCount()
			go func() { done <- s.Run(ctx) }()
			defer func() { cancel(); <-done }()
			if err := clk.WaitArmCount(ctx, arms+1); err != nil {
				b.Fatal(err)
			}
			wakes := uint64(0)
			minutes := 0
			b.ResetTimer()
			for b.Loop() {
				for range 60 {
					fires, arms := clk.Fires(), clk.ArmCount()
					clk.Advance(time.Second)
					if clk.Fires() > fires { // the loop woke: wait until it has gone back to sleep
						if err := clk.WaitArmCount(ctx, arms+1); err != nil {
							b.Fatal(err)
						}
						wakes += clk.Fires() - fires
					}
				}
				minutes++
			}
			b.ReportMetric(float64(wakes)/float64(minutes), "wakeups/min")
		})
	}
}

// offsetClock is the real clock moved by a fixed offset: real timers and real elapsed time, with
// "now" placed just before a minute boundary so that a benchmark need not wait for one.
type offsetClock struct{ off time.Duration }

func (c offsetClock) Now() time.Time                       { return time.Now().Add(c.off) }
func (c offsetClock) NewTimer(d time.Duration) clock.Timer { return clock.Real{}.NewTimer(d) }

// latencyRecorder wraps the run queue and records, after each commit, how late the run is
// relative to its trigger.
type latencyRecorder struct {
	*runs.Service
	clk     clock.Clock
	trigger time.Time
	mu      sync.Mutex
	late    []time.Duration
	all     chan struct{}
	want    int
}

func (l *latencyRecorder) Committed(e runs.Enqueued) {
	d := l.clk.Now().Sub(l.trigger)
	l.Service.Committed(e)
	l.mu.Lock()
	l.late = append(l.late, d)
	if len(l.late) == l.want {
		close(l.all)
	}
	l.mu.Unlock()
}

// BenchmarkTriggerLateness: 1,000 jobs due in the same minute, real clock and real SQLite. The
// figures are the p50 and p99 of (run enqueued and committed) − (trigger instant), for the
// scheduler against a 1-second poller that starts at a random phase. One op is one minute
// boundary with its 1,000 triggers.
func BenchmarkTriggerLateness(b *testing.B) {
	const jobsN = 1000
	for _, impl := range []string{"poller", "scheduler"} {
		b.Run("impl="+impl, func(b *testing.B) {
			db := storagetest.Open(b)
			t0 := time.Now().Truncate(time.Minute).Add(time.Hour) // a boundary in the future
			insertJobs(b, db, jobsN, "* * * * *", t0.Add(-time.Minute))
			var late []time.Duration
			i := 0
			for b.Loop() {
				trigger := t0.Add(time.Duration(i) * time.Minute)
				i++
				// Start between 50 ms and 1.05 s before the boundary: the poller's phase is random.
				lead := 50*time.Millisecond + time.Duration(rand.Int64N(int64(time.Second)))
				clk := offsetClock{off: trigger.Add(-lead).Sub(time.Now())}
				rec := &latencyRecorder{Service: runs.New(runs.Config{DB: db, Clock: clk, Log: zerolog.Nop()}),
					clk: clk, trigger: trigger, all: make(chan struct{}), want: jobsN}
				s := New(Config{DB: db, Clock: clk, Log: zerolog.Nop(), Runs: rec})
				if impl == "poller" {
					s.pollEvery = time.Second
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- s.Run(ctx) }()
				select {
				case <-rec.all:
				case <-time.After(time.Minute):
					b.Fatal("triggers never fired")
				}
				cancel()
				<-done
				late = append(late, rec.late...)
			}
			slices.Sort(late)
			pct := func(p float64) float64 {
				return float64(late[int(p*float64(len(late)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}

package notify

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// pollerRun is the baseline: the original's first design, which claimed one due row at a time
// and, when none was due, slept a fixed second before asking again. It delivers with the same
// code as the worker, so the benchmarks compare only the scheduling.
func pollerRun(ctx context.Context, s *Service, loops *atomic.Int64) {
	t := s.clock.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		now := s.clock.Now().Unix()
		n, err := s.db.Writer().ClaimNotification(ctx, now, now+int64(s.lease/time.Second), nil)
		if err == nil {
			s.deliver(ctx, n)
			continue
		}
		t.Reset(time.Second)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			loops.Add(1)
		}
	}
}

type benchEnv struct {
	ctx   context.Context
	db    *storage.DB
	svc   *Service
	mem   *memSecrets
	recv  chan time.Time
	count atomic.Int64
	srv   *httptest.Server
}

func newBenchEnv(b *testing.B, clk clock.Clock, conc int) *benchEnv {
	b.Helper()
	db := storagetest.Open(b)
	e := &benchEnv{ctx: context.Background(), db: db, mem: &memSecrets{db: db, m: map[string][]byte{}},
		recv: make(chan time.Time, 1<<16)}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		e.count.Add(1)
		e.recv <- time.Now()
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(e.srv.Close)
	svc, err := New(Options{DB: db, Secrets: e.mem, Clock: clk, Logger: zerolog.Nop(), RateEvery: -1, Concurrency: conc})
	if err != nil {
		b.Fatal(err)
	}
	e.svc = svc
	if err := db.Write(e.ctx, func(q storage.Q) error {
		return q.InsertJob(e.ctx, storage.Job{ID: "job-1", Name: "Bench", ScheduleTimezone: "UTC",
			OverlapPolicy: "queue", MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1})
	}); err != nil {
		b.Fatal(err)
	}
	return e
}

func (e *benchEnv) addHooks(b *testing.B, n int) {
	for i := range n {
		name := fmt.Sprintf("hook-%03d", i)
		raw := []byte(`{"url":"` + e.srv.URL + "/" + name + `"}`)
		if _, err := secrets.DecodePayload(secrets.KindWebhook, raw); err != nil {
			b.Fatal(err)
		}
		e.mem.mu.Lock()
		e.mem.m["hub/webhook/"+name] = raw
		e.mem.mu.Unlock()
		if _, err := e.db.Writer().Exec(e.ctx, `INSERT INTO secrets(id, node_id, kind, name, kid, nonce, ciphertext, created_at, updated_at)
			VALUES (?, 'hub', 'webhook', ?, 1, x'00', x'00', 1, 1)`, name, name); err != nil {
			b.Fatal(err)
		}
	}
}

// start runs the scheduler under test until the benchmark ends.
func (e *benchEnv) start(b *testing.B, impl string, loops *atomic.Int64) {
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if impl == "poller" {
			pollerRun(ctx, e.svc, loops)
			return
		}
		if err := e.svc.Run(ctx); err != nil {
			b.Error(err)
		}
	}()
	b.Cleanup(func() { cancel(); <-done })
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// BenchmarkNotifyLatency measures enqueue-to-delivery latency (from the commit of the run's final
// write until a local receiver has the request) for the sleeping worker and the 1-second poller.
// Runs end at arbitrary moments, not in step with the poller: each enqueue comes a different
// fraction of a second (a low-discrepancy sequence over [0, 1 s)) after the previous delivery
// was recorded, for both implementations alike.
func BenchmarkNotifyLatency(b *testing.B) {
	for _, impl := range []string{"poller", "sleeping"} {
		b.Run("impl="+impl, func(b *testing.B) {
			e := newBenchEnv(b, clock.Real{}, 4)
			e.addHooks(b, 1)
			var loops atomic.Int64
			e.start(b, impl, &loops)
			var lat []time.Duration
			i := 0
			for b.Loop() {
				i++
				run := "run-" + strconv.Itoa(i)
				if i > 1 {
					b.StopTimer()
					e.waitSent(b, "run-"+strconv.Itoa(i-1))
					phase := time.Duration(math.Mod(float64(i)*0.6180339887, 1) * float64(time.Second))
					<-time.After(phase) // models when the next run happens to end
					b.StartTimer()
				}
				began := time.Now()
				if err := e.db.Write(e.ctx, func(q storage.Q) error {
					end := time.Now().Unix()
					if err := q.InsertRun(e.ctx, storage.Run{ID: run, JobID: "job-1", Status: storage.RunSuccess, StartedAt: end, EndedAt: &end}); err != nil {
						return err
					}
					_, err := e.svc.EnqueueForRun(e.ctx, q, RunInfo{ID: run, Status: storage.RunSuccess}, JobNotifications{})
					return err
				}); err != nil {
					b.Fatal(err)
				}
				e.svc.Wake()
				lat = append(lat, (<-e.recv).Sub(began))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
		})
	}
}

// waitSent polls until the run's notification is recorded as sent.
func (e *benchEnv) waitSent(b *testing.B, run string) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		var st string
		if err := e.db.Reader().QueryRow(e.ctx, `SELECT status FROM notifications WHERE run_id = ?`, run).Scan(&st); err != nil {
			b.Fatal(err)
		}
		if st == storage.NotificationSent {
			return
		}
		<-tick.C
	}
}

// BenchmarkNotifyIdleWakeups counts how often the scheduler wakes in one simulated idle hour
// (fake clock, empty queue): the poller wakes every second, the sleeping worker never.
func BenchmarkNotifyIdleWakeups(b *testing.B) {
	for _, impl := range []string{"poller", "sleeping"} {
		b.Run("impl="+impl, func(b *testing.B) {
			clk := clock.NewFake(t0)
			e := newBenchEnv(b, clk, 4)
			var loops atomic.Int64
			settled := make(chan struct{}, 1)
			e.svc.hookIdle = func(idleReport) {
				select {
				case settled <- struct{}{}:
				default:
				}
			}
			e.start(b, impl, &loops)
			if impl == "sleeping" {
				<-settled
			} else if err := clk.WaitArmCount(e.ctx, 2); err != nil { // created, then armed for 1 s
				b.Fatal(err)
			}
			var wakeups int64
			for b.Loop() {
				before := loops.Load() + e.svc.wakeups()
				for range 3600 {
					if impl == "poller" {
						// Move time on only once the poller sleeps again.
						armed := clk.ArmCount()
						clk.Advance(time.Second)
						if err := clk.WaitArmCount(e.ctx, armed+1); err != nil {
							b.Fatal(err)
						}
						continue
					}
					clk.Advance(time.Second)
				}
				wakeups = loops.Load() + e.svc.wakeups() - before
			}
			b.ReportMetric(float64(wakeups), "wakeups/idle-hour")
		})
	}
}

// benchBacklog is the size of the drained backlog: 10,000 under scripts/bench (which sets
// NOTIFY_BENCH_BACKLOG), 1,000 when CI runs every benchmark once.
func benchBacklog() int {
	if n, err := strconv.Atoi(os.Getenv("NOTIFY_BENCH_BACKLOG")); err == nil && n > 0 {
		return n
	}
	return 1000
}

// BenchmarkNotifyDrain measures how fast a backlog spread over 50 destinations on one local
// receiver drains: the poller (one at a time), the worker limited to one delivery in flight,
// and the worker with its default four.
func BenchmarkNotifyDrain(b *testing.B) {
	const dests = 50
	for _, tc := range []struct {
		impl string
		conc int
	}{{"poller", 1}, {"sleeping-serial", 1}, {"sleeping", 4}} {
		b.Run("impl="+tc.impl, func(b *testing.B) {
			size := benchBacklog()
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				e := newBenchEnv(b, clock.Real{}, tc.conc)
				e.addHooks(b, dests)
				now := time.Now().Unix()
				if err := e.db.Write(e.ctx, func(q storage.Q) error {
					for i := range size {
						run := "run-" + strconv.Itoa(i)
						if err := q.InsertRun(e.ctx, storage.Run{ID: run, JobID: "job-1", Status: storage.RunSuccess, StartedAt: now, EndedAt: &now}); err != nil {
							return err
						}
						if _, err := q.InsertNotification(e.ctx, storage.Notification{ID: uuid.NewString(), RunID: run,
							Channel: ChannelWebhook, SecretName: fmt.Sprintf("hook-%03d", i%dests), Status: storage.NotificationQueued,
							NextAttemptAt: now, CreatedAt: now, UpdatedAt: now}); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				var loops atomic.Int64
				b.StartTimer()
				began := time.Now()
				e.start(b, tc.impl, &loops)
				for range size {
					<-e.recv
				}
				total += time.Since(began)
			}
			b.ReportMetric(float64(size*b.N)/total.Seconds(), "msgs/s")
		})
	}
}

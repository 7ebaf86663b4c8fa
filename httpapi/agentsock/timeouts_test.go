package agentsock_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// TestAgentTimeout drives the agent-timeout rule on a fake clock: a run whose agent went away
// fails with agent_timeout once the agent has been silent for 24 h, not a minute earlier; a run
// on an agent that stays connected is never timed out, however long it takes; and the late result
// of the timed-out run, when its agent returns, is acknowledged without changing anything.
func TestAgentTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	hubClock := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	bridge := agentsock.NewRunBridge()
	// The Hub's clock drives only the timeout loop here (the ACK loop is not started).
	h := agentsock.New(agentsock.Config{DB: db, Clock: hubClock, Logger: log, Sink: bridge, OnConnect: bridge.AgentConnected})
	svc := runs.New(runs.Config{DB: db, Clock: clock.Real{}, Log: log, Agents: bridge})
	bridge.Attach(h, svc)
	r := chi.NewRouter()
	r.Use(middleware.RequestID(log), middleware.ClientIP(nil, false))
	h.Routes(r)
	srv := httptest.NewServer(r)
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	runLoop(t, svc.Run)

	px := newFaultProxy(t, srv.Listener.Addr().String())
	exGone, exSlow := newExecutor(), newExecutor()
	gone := startAgent(t, px.url(), newEnrollToken(t, db, nil), t.TempDir(), exGone, time.Second)
	slow := startAgent(t, srv.URL, newEnrollToken(t, db, nil), t.TempDir(), exSlow, time.Second)
	waitFor(t, "agents connected", func() bool { return h.Connected(gone.a.ID()) && h.Connected(slow.a.ID()) })
	trigger := func(jobID, agentID string) string {
		t.Helper()
		job := storage.Job{ID: jobID, Name: jobID, AgentID: &agentID, ScheduleTimezone: "UTC", OverlapPolicy: "queue", MissedRunPolicy: "run_once",
			SpecJSON: `{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"local_dir","base_dir":"/bk"}}`, CreatedAt: 1, UpdatedAt: 1}
		if err := db.Writer().InsertJob(ctx, job); err != nil {
			t.Fatal(err)
		}
		run, err := svc.Trigger(ctx, jobID, runs.SourceManual)
		if err != nil {
			t.Fatal(err)
		}
		return run.ID
	}
	goneRun, slowRun := trigger("job-gone", gone.a.ID()), trigger("job-slow", slow.a.ID())
	<-exGone.started
	<-exSlow.started
	status := func(id string) storage.Run {
		r, err := db.Reader().GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// One agent loses the Hub for good (as far as the Hub can tell).
	px.setUpstream("127.0.0.1:1")
	px.faultAll(faultDrop)
	waitFor(t, "agent gone", func() bool { return !h.Connected(gone.a.ID()) })

	runLoop(t, h.RunTimeouts)
	arms := uint64(2) // the first timer and its re-arm after the first pass
	step := func(d time.Duration) {
		t.Helper()
		if err := hubClock.WaitArmCount(ctx, arms); err != nil {
			t.Fatal(err)
		}
		hubClock.Advance(d)
		arms++
		if err := hubClock.WaitArmCount(ctx, arms); err != nil {
			t.Fatal(err)
		}
	}

	step(24*time.Hour - time.Minute)
	if s := status(goneRun).Status; s != storage.RunRunning {
		t.Fatalf("run failed before its agent was away 24 h: %s", s)
	}
	step(2 * time.Minute)
	got := status(goneRun)
	if got.Status != storage.RunFailed || deref(got.Error) != agentsock.CodeAgentTimeout {
		t.Fatalf("run of the agent away for 24 h: %s %s", got.Status, deref(got.Error))
	}
	if tk, _ := db.Reader().GetAgentTask(ctx, goneRun); tk.CompletedAt == nil {
		t.Fatal("the timed-out task is still open")
	}
	step(72 * time.Hour)
	if s := status(slowRun).Status; s != storage.RunRunning {
		t.Fatalf("the run of a connected agent was timed out: %s", s)
	}

	// The agent comes back and finishes: its result is acknowledged, the run stays failed.
	px.setUpstream(srv.Listener.Addr().String())
	waitFor(t, "agent back", func() bool { return h.Connected(gone.a.ID()) })
	close(exGone.release)
	waitFor(t, "late result acknowledged", func() bool { return resultAckedOnAgent(gone.dir, goneRun) })
	if got := status(goneRun); got.Status != storage.RunFailed || deref(got.Error) != agentsock.CodeAgentTimeout {
		t.Fatalf("a late result changed the timed-out run: %s %s", got.Status, deref(got.Error))
	}
	close(exSlow.release)
	waitFor(t, "slow run succeeded", func() bool { return status(slowRun).Status == storage.RunSuccess })
}

// clockStepSink is a TaskSink whose first Result moves the Hub's fake clock, as slow work inside
// a timeout pass would.
type clockStepSink struct {
	*recordingSink
	clock *clock.Fake
	step  time.Duration
	once  sync.Once
}

func (s *clockStepSink) Result(ctx context.Context, t storage.AgentTask, res *protocol.TaskResult) error {
	s.once.Do(func() { s.clock.Advance(s.step) })
	return s.recordingSink.Result(ctx, t, res)
}

// TestAgentTimeoutLoopArmsForTheDeadline: time that passes while the timeout loop gives up a task
// shortens its sleep until the next agent's deadline instead of pushing the wake-up past it.
func TestAgentTimeoutLoopArmsForTheDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fake := clock.NewFake(t0)
	sink := &clockStepSink{recordingSink: newSink(), clock: fake, step: time.Minute}
	h := agentsock.New(agentsock.Config{DB: db, Clock: fake, Logger: zerolog.New(zerolog.NewTestWriter(t)), Sink: sink})
	insertAgentKey(t, db, "gone")  // never heard from: due 24 h after the Hub's start
	insertAgentKey(t, db, "later") // last heard 2 min after it: due 2 min later
	if err := db.Writer().TouchAgentSeen(ctx, "later", t0.Add(2*time.Minute).Unix()); err != nil {
		t.Fatal(err)
	}
	for _, agent := range []string{"gone", "later"} {
		if err := db.Writer().InsertAgentTask(ctx, storage.AgentTask{ID: agent + "-task", AgentID: agent, RunID: agent + "-task",
			Kind: storage.AgentTaskBackup, PayloadJSON: "{}", CreatedAt: t0.Unix(), UpdatedAt: t0.Unix()}); err != nil {
			t.Fatal(err)
		}
	}
	runLoop(t, h.RunTimeouts)

	if err := fake.WaitArmCount(ctx, 2); err != nil { // the first timer and its re-arm after the first pass
		t.Fatal(err)
	}
	fake.Set(t0.Add(24 * time.Hour)) // "gone" is due; giving it up takes a minute
	if err := fake.WaitArmCount(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if _, calls, _ := sink.result("gone-task"); calls != 1 {
		t.Fatalf("the task of the agent away 24 h was not given up (%d results)", calls)
	}
	want := t0.Add(24*time.Hour + 2*time.Minute)
	if d, ok := fake.NextDeadline(); !ok || !d.Equal(want) {
		t.Fatalf("timer armed for %v (%v), want the next agent's deadline %v", d, ok, want)
	}
}

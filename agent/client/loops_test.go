package client

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
)

// bareAgent is an Agent with just what its loops use, on a fake clock.
func bareAgent(t *testing.T, clk clock.Clock) *Agent {
	t.Helper()
	return &Agent{
		o: Options{DataDir: t.TempDir()}, clock: clk, log: zerolog.New(zerolog.NewTestWriter(t)),
		lock: make(chan struct{}, 1), running: map[string]*runningTask{}, pendingCancel: map[string]struct{}{},
		logs: map[string]*eventLog{}, offlineBusy: map[string]bool{},
		schedWake: make(chan struct{}, 1), taskEnded: make(chan struct{}, 1),
	}
}

// eventually polls cond until it holds or 20 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitingAgent is a bare agent with one running task, stopping: waitTasks has armed its grace
// timer. done closes when waitTasks returns.
func waitingAgent(t *testing.T, fake *clock.Fake, task string) (a *Agent, done <-chan struct{}) {
	t.Helper()
	a = bareAgent(t, fake)
	a.running[task] = &runningTask{cancel: func() {}}
	arms := fake.ArmCount()
	ended := make(chan struct{})
	go func() { a.waitTasks(); close(ended) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fake.WaitArmCount(ctx, arms+1); err != nil {
		t.Fatalf("waitTasks armed no grace timer on the agent's clock: %v", err)
	}
	return a, ended
}

// TestWaitTasks: a stopping agent waits for its running tasks on a signal, not by polling, and
// at most stopGrace on its own clock.
func TestWaitTasks(t *testing.T) {
	t.Parallel()
	t.Run("WakesWhenTheTaskEnds", func(t *testing.T) {
		t.Parallel()
		fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		a, done := waitingAgent(t, fake, "t1")
		a.mu.Lock()
		a.endTaskLocked("t1")
		a.mu.Unlock()
		<-done // without the clock moving: the task's end woke it
	})
	t.Run("GivesUpAfterTheGrace", func(t *testing.T) {
		t.Parallel()
		fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		_, done := waitingAgent(t, fake, "stuck")
		if d, _ := fake.NextDeadline(); !d.Equal(fake.Now().Add(stopGrace)) {
			t.Fatalf("grace ends at %v, want %v", d, fake.Now().Add(stopGrace))
		}
		fake.Advance(stopGrace)
		<-done
	})
}

// TestOfflineSchedulerSleepsUntilTheNextTrigger: the offline scheduler sleeps until its earliest
// trigger (at most offlineMaxSleep, to notice clock steps), not a fixed minute, and not at all
// while nothing is scheduled; a new config wakes it.
func TestOfflineSchedulerSleepsUntilTheNextTrigger(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	fake := clock.NewFake(start)
	a := bareAgent(t, fake)
	m, err := OpenManaged(a.o.DataDir, fake.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.bind("agent-1"); err != nil {
		t.Fatal(err)
	}
	a.o.Managed = m
	a.sess = &session{} // connected: a due trigger would only be stepped over
	configure := func(schedules ...string) {
		t.Helper()
		snap := &protocol.ConfigSnapshot{NodeID: "agent-1", SnapshotID: "s"}
		for i, expr := range schedules {
			snap.Jobs = append(snap.Jobs, protocol.ConfigJob{JobID: string(rune('a' + i)), Schedule: &expr, Spec: []byte(`{}`)})
		}
		if err := m.SaveConfig(snap); err != nil {
			t.Fatal(err)
		}
		select { // as onConfig does
		case a.schedWake <- struct{}{}:
		default:
		}
	}
	wakeAt := func(want time.Time) {
		t.Helper()
		eventually(t, "wake-up at "+want.String(), func() bool {
			d, ok := fake.NextDeadline()
			return ok && d.Equal(want)
		})
	}
	configure("0 3 * * *")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.offlineScheduler(ctx) }()
	defer func() { cancel(); <-done }()

	wakeAt(start.Add(offlineMaxSleep)) // 03:00 is hours away: capped
	configure("0 3 * * *", "*/2 * * * *")
	wakeAt(time.Date(2026, 1, 1, 0, 2, 0, 0, time.UTC))
	configure() // nothing scheduled any more: no wake-up at all
	eventually(t, "no timer armed", func() bool { return fake.Armed() == 0 })
}

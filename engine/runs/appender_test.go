package runs

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/storage"
)

func runtimeGosched() { runtime.Gosched() }

func TestGroupCommitKeepsEveryRunsOrderAndIsolatesBadRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{noRun: true})
	b.startLoop()
	const runsN, per = 20, 30
	var ids []string
	for i := range runsN {
		j := b.job(fmt.Sprint("j", i), OverlapQueue, ptr("a1"))
		ids = append(ids, b.trigger(j.ID).ID)
	}
	subs := make([]*Subscription, runsN)
	for i, id := range ids {
		subs[i] = b.svc.Bus().Subscribe(id)
		defer subs[i].Close()
	}
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range per {
				if err := b.svc.AppendEvents(b.ctx, id, Event{Kind: "log", Message: fmt.Sprint(i, ":", k)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	// A request for a run that does not exist fails alone.
	if err := b.svc.AppendEvents(b.ctx, "no-such-run", Event{Kind: "log"}); err == nil {
		t.Fatal("append to a missing run succeeded")
	}
	wg.Wait()
	for i, id := range ids {
		evs, err := b.db.Reader().ListRunEvents(b.ctx, id, 1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != per {
			t.Fatalf("run %d has %d events, want %d", i, len(evs), per)
		}
		for k, e := range evs {
			if e.Seq != int64(k+2) || e.Message != fmt.Sprint(i, ":", k) {
				t.Fatalf("run %d event %d = seq %d %q: order lost", i, k, e.Seq, e.Message)
			}
		}
		seen := map[int64]bool{}
		for range per {
			e := <-subs[i].C
			if e.RunID != id || seen[e.Seq] {
				t.Fatalf("bus delivered %+v twice or to the wrong run", e)
			}
			seen[e.Seq] = true
		}
	}
}

func TestPrunerDeletesOldHistoryHourly(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{noRun: true})
	b.job("j", OverlapQueue, nil)
	old := b.trigger("j")
	if err := b.svc.Finish(b.ctx, old.ID, Outcome{Status: storage.RunSuccess}); err != nil {
		t.Fatal(err)
	}
	passed := make(chan int64, 1)
	p := &Pruner{DB: b.db, Clock: b.clk, Log: b.svc.log, RetentionDays: func() int { return 2 }, passed: passed}
	ctx := t.Context()
	want := b.clk.ArmCount() + 2 // NewTimer(0), then Reset after the first pass
	go func() { _ = p.Run(ctx) }()
	// pass waits for the loop's next pass and for its timer to be re-armed after it.
	pass := func() int64 {
		t.Helper()
		n := <-passed
		if err := b.clk.WaitArmCount(ctx, want); err != nil {
			t.Fatal(err)
		}
		want++
		return n
	}
	if n := pass(); n != 0 {
		t.Fatalf("first pass pruned %d, the run is fresh", n)
	}
	b.clk.Advance(2*24*time.Hour + time.Second - PruneInterval) // one pass, before the run expires
	if n := pass(); n != 0 {
		t.Fatalf("pass before the run expired pruned %d", n)
	}
	b.clk.Advance(PruneInterval)
	if n := pass(); n != 1 {
		t.Fatalf("pass after expiry pruned %d, want 1", n)
	}
	if _, err := b.db.Reader().GetRun(b.ctx, old.ID); err == nil {
		t.Fatal("old run still there")
	}
}

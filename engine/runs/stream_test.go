package runs

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/bastion-backup/bastion/storage"
)

// collect runs Stream in a goroutine; gate, when set, blocks the first send until closed.
func collect(b *testBundle, runID string, after int64, gate chan struct{}) (func() []int64, chan error) {
	var mu sync.Mutex
	var seqs []int64
	done := make(chan error, 1)
	first := true
	go func() {
		done <- b.svc.Stream(b.ctx, runID, after, func(evs []storage.RunEvent) error {
			if first && gate != nil {
				first = false
				<-gate
			}
			mu.Lock()
			defer mu.Unlock()
			for _, e := range evs {
				seqs = append(seqs, e.Seq)
			}
			return nil
		})
	}()
	return func() []int64 { mu.Lock(); defer mu.Unlock(); return append([]int64(nil), seqs...) }, done
}

func checkSeqs(t *testing.T, got []int64, from, to int64) {
	t.Helper()
	if int64(len(got)) != to-from+1 {
		t.Fatalf("got %d events, want %d..%d", len(got), from, to)
	}
	for i, s := range got {
		if s != from+int64(i) {
			t.Fatalf("event %d has seq %d, want %d (gap or duplicate)", i, s, from+int64(i))
		}
	}
}

func TestStreamReplaysThenFollowsWithoutGapsOrDuplicates(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{noRun: true})
	b.startLoop() // the event writer; no executor call happens (the run is moved by hand)
	b.job("ag", OverlapQueue, ptr("a1"))
	r := b.trigger("ag") // seq 1: queued
	if _, err := b.db.Writer().Exec(b.ctx, `UPDATE runs SET status = 'running' WHERE id = ?`, r.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 4 { // seq 2..5
		if err := b.svc.AppendEvents(b.ctx, r.ID, Event{Kind: "log", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got, done := collect(b, r.ID, 2, nil)
	// Many writers at once: commits and publications interleave.
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				if err := b.svc.AppendEvents(b.ctx, r.ID, Event{Kind: "log", Message: fmt.Sprint(w, i)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := b.svc.Finish(b.ctx, r.ID, Outcome{Status: storage.RunSuccess}); err != nil { // seq 206
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, got(), 3, 206)
}

func TestStreamRecoversFromLag(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{noRun: true})
	b.startLoop()
	b.job("ag", OverlapQueue, ptr("a1"))
	r := b.trigger("ag")
	if _, err := b.db.Writer().Exec(b.ctx, `UPDATE runs SET status = 'running' WHERE id = ?`, r.ID); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	got, done := collect(b, r.ID, 0, gate) // blocks in its first (replay) send
	waitSubscribed(t, b, r.ID)
	evs := make([]Event, SubscriptionBuffer+300)
	for i := range evs {
		evs[i] = Event{Kind: "log", Message: "x"}
	}
	if err := b.svc.AppendEvents(b.ctx, r.ID, evs...); err != nil { // overflows the buffer
		t.Fatal(err)
	}
	close(gate)
	if err := b.svc.Finish(b.ctx, r.ID, Outcome{Status: storage.RunSuccess}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, got(), 1, int64(len(evs))+2)
}

func TestStreamOfAFinishedRunEndsAfterReplay(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{noRun: true})
	b.job("j", OverlapReject, nil)
	r := b.trigger("j")
	if err := b.svc.Finish(context.Background(), r.ID, Outcome{Status: storage.RunSuccess}); err != nil {
		t.Fatal(err)
	}
	got, done := collect(b, r.ID, 0, nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, got(), 1, 2)
	if b.svc.Bus().Subscribers(r.ID) != 0 {
		t.Fatal("subscription left behind")
	}
	_, done = collect(b, "missing", 0, nil)
	if err := <-done; err != nil {
		t.Fatalf("stream of a missing run = %v", err)
	}
}

func waitSubscribed(t *testing.T, b *testBundle, runID string) {
	t.Helper()
	for b.svc.Bus().Subscribers(runID) == 0 {
		select {
		case <-t.Context().Done():
			t.Fatal("never subscribed")
		default:
		}
		runtimeGosched()
	}
}

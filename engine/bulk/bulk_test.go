package bulk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/bulk"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

func TestMain(m *testing.M) {
	os.Exit(testtool.RunCheckingLeaks(m, "/engine/bulk."))
}

type bundle struct {
	db    *storage.DB
	clock *clock.Fake
}

func setup(t *testing.T, agents int) *bundle {
	t.Helper()
	db := storagetest.Open(t)
	var ids []string
	for i := range agents {
		id := fmt.Sprintf("a%02d", i)
		ids = append(ids, id)
		if err := db.Writer().InsertAgent(context.Background(), storage.Agent{ID: id, KeyHash: []byte(id), CreatedAt: 1, UpdatedAt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Writer().InsertBulkOperation(context.Background(), storage.BulkOperation{ID: "op", Kind: "work",
		SelectorJSON: "{}", PayloadJSON: `{"n":1}`, CreatedAt: 1}, ids); err != nil {
		t.Fatal(err)
	}
	return &bundle{db: db, clock: clock.NewFake(time.Unix(100, 0))}
}

// start runs a loop with kind "work" until the returned stop is called (or the test ends).
func (b *bundle) start(t *testing.T, work bulk.KindFunc) (stop func()) {
	t.Helper()
	l := bulk.New(bulk.Config{DB: b.db, Clock: b.clock, Log: zerolog.New(zerolog.NewTestWriter(t))})
	l.Handle("work", work)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (b *bundle) items(t *testing.T) map[string]storage.BulkItem {
	t.Helper()
	items, err := b.db.Reader().ListBulkItems(context.Background(), "op")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]storage.BulkItem{}
	for _, it := range items {
		out[it.AgentID] = it
	}
	return out
}

func (b *bundle) waitDone(t *testing.T) storage.BulkOperation {
	t.Helper()
	var o storage.BulkOperation
	eventually(t, "operation done", func() bool {
		var err error
		o, err = b.db.Reader().GetBulkOperation(context.Background(), "op")
		if err != nil {
			t.Fatal(err)
		}
		return o.Status == storage.BulkDone
	})
	return o
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	for !cond() {
		if time.Now().After(deadline.Add(-time.Second)) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLoopRunsAtMostEightAtOnceAndRecordsOutcomes(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	var mu sync.Mutex
	inFlight, most := 0, 0
	release := make(chan struct{})
	b.start(t, func(ctx context.Context, it bulk.Item, payload json.RawMessage) (bulk.Note, error) {
		agent := it.AgentID
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		<-release
		if string(payload) != `{"n":1}` {
			return bulk.Note{}, fmt.Errorf("payload %s", payload)
		}
		switch agent {
		case "a03":
			return bulk.Note{}, bulk.Fail("agent_revoked", "the agent is revoked")
		case "a04":
			return bulk.Note{}, fmt.Errorf("disk on fire")
		case "a05":
			return bulk.Note{Kind: "skipped", Message: "already exists"}, nil
		}
		return bulk.Note{}, nil
	})
	eventually(t, "eight items in flight", func() bool { mu.Lock(); defer mu.Unlock(); return inFlight == 8 })
	if got := b.items(t)["a08"].Status; got != storage.BulkItemQueued {
		t.Fatalf("a ninth item was claimed while eight ran: %s", got)
	}
	close(release)
	o := b.waitDone(t)
	if most != 8 || o.Counts != (storage.BulkCounts{Total: 20, Success: 18, Failed: 2}) {
		t.Fatalf("most in flight %d, counts %+v", most, o.Counts)
	}
	items := b.items(t)
	for id, want := range map[string]string{"a03": "agent_revoked/the agent is revoked", "a04": "internal_error/disk on fire",
		"a05": "skipped/already exists"} {
		if it := items[id]; it.LastErrorKind == nil || *it.LastErrorKind+"/"+*it.LastError != want {
			t.Fatalf("%s: %+v, want %s", id, it, want)
		}
	}
	if it := items["a00"]; it.Status != storage.BulkItemSuccess || it.Attempts != 1 || it.LastErrorKind != nil {
		t.Fatalf("a00: %+v", it)
	}
}

// A Hub stopped while items ran: they stay running in the database, and the next loop on the
// same database runs them again (and the ones never started).
func TestLoopResumesAfterRestart(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	started := make(chan string, 3)
	stop := b.start(t, func(ctx context.Context, it bulk.Item, _ json.RawMessage) (bulk.Note, error) {
		agent := it.AgentID
		if agent == "a02" {
			return bulk.Note{}, nil
		}
		started <- agent
		<-ctx.Done() // the Hub stops mid-item
		return bulk.Note{}, ctx.Err()
	})
	<-started
	<-started
	eventually(t, "a02 done", func() bool { return b.items(t)["a02"].Status == storage.BulkItemSuccess })
	stop()
	items := b.items(t)
	if items["a00"].Status != storage.BulkItemRunning || items["a01"].Status != storage.BulkItemRunning {
		t.Fatalf("interrupted items: %+v", items)
	}

	var mu sync.Mutex
	var again []string
	b.start(t, func(ctx context.Context, it bulk.Item, _ json.RawMessage) (bulk.Note, error) {
		mu.Lock()
		again = append(again, it.AgentID)
		mu.Unlock()
		return bulk.Note{}, nil
	})
	o := b.waitDone(t)
	items = b.items(t)
	if o.Counts.Success != 3 || len(again) != 2 || items["a00"].Attempts != 2 || items["a02"].Attempts != 1 {
		t.Fatalf("after restart: ran %v, counts %+v, items %+v", again, o.Counts, items)
	}
}

// Canceling stops queued items; the running one finishes; nothing else is claimed.
func TestLoopCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	release := make(chan struct{})
	var mu sync.Mutex
	ran := 0
	b.start(t, func(ctx context.Context, _ bulk.Item, _ json.RawMessage) (bulk.Note, error) {
		mu.Lock()
		ran++
		mu.Unlock()
		<-release
		return bulk.Note{}, nil
	})
	eventually(t, "eight running", func() bool { mu.Lock(); defer mu.Unlock(); return ran == 8 })
	if err := b.db.Writer().CancelBulkOperation(context.Background(), "op", 200); err != nil {
		t.Fatal(err)
	}
	close(release)
	var o storage.BulkOperation
	eventually(t, "operation ended", func() bool {
		o, _ = b.db.Reader().GetBulkOperation(context.Background(), "op")
		return o.EndedAt != nil
	})
	if o.Status != storage.BulkCanceled || o.Counts != (storage.BulkCounts{Total: 10, Success: 8, Canceled: 2}) || ran != 8 {
		t.Fatalf("canceled: %+v, ran %d", o, ran)
	}
}

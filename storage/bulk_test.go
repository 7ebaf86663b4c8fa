package storage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

func bulkFixture(t *testing.T, agents ...string) (*storage.DB, string) {
	t.Helper()
	ctx := context.Background()
	db := storagetest.Open(t)
	for _, id := range agents {
		if err := db.Writer().InsertAgent(ctx, storage.Agent{ID: id, KeyHash: []byte("key-" + id), CreatedAt: 1, UpdatedAt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	op := storage.BulkOperation{ID: "op1", Kind: "agent_labels_add", SelectorJSON: `{"node_ids":[]}`, PayloadJSON: `{"labels":["x"]}`, CreatedAt: 10}
	if err := db.Writer().InsertBulkOperation(ctx, op, agents); err != nil {
		t.Fatal(err)
	}
	return db, op.ID
}

func bulkStatuses(t *testing.T, db *storage.DB, id string) string {
	t.Helper()
	o, err := db.Reader().GetBulkOperation(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	items, err := db.Reader().ListBulkItems(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := o.Status
	for _, it := range items {
		out += fmt.Sprintf(" %s=%s/%d", it.AgentID, it.Status, it.Attempts)
	}
	return out
}

func TestBulkItemsLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, id := bulkFixture(t, "a", "b", "c")
	w := db.Writer()

	claimed, err := w.ClaimBulkItems(ctx, 2, 20)
	if err != nil || len(claimed) != 2 || claimed[0].AgentID != "a" || claimed[1].Attempts != 1 || claimed[0].Kind != "agent_labels_add" {
		t.Fatalf("claim: %+v %v", claimed, err)
	}
	if got := bulkStatuses(t, db, id); got != "running a=running/1 b=running/1 c=queued/0" {
		t.Fatalf("after claim: %s", got)
	}
	// A Hub stopped here: its running items go back to the queue, attempts kept.
	if n, err := w.RequeueRunningBulkItems(ctx, 21); err != nil || n != 2 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	if claimed, _ = w.ClaimBulkItems(ctx, 8, 22); len(claimed) != 3 {
		t.Fatalf("claim after requeue: %+v", claimed)
	}
	kind, msg := "agent_revoked", "the agent is revoked"
	must(t, w.FinishBulkItem(ctx, id, "a", storage.BulkItemSuccess, nil, nil, 23))
	must(t, w.FinishBulkItem(ctx, id, "b", storage.BulkItemFailed, &kind, &msg, 23))
	if got := bulkStatuses(t, db, id); got != "running a=success/2 b=failed/2 c=running/1" {
		t.Fatalf("after finishing two: %s", got)
	}
	must(t, w.FinishBulkItem(ctx, id, "c", storage.BulkItemSuccess, nil, nil, 24))
	o, _ := db.Reader().GetBulkOperation(ctx, id)
	if o.Status != storage.BulkDone || o.EndedAt == nil || *o.EndedAt != 24 || o.Counts != (storage.BulkCounts{Total: 3, Success: 2, Failed: 1}) {
		t.Fatalf("done: %+v", o)
	}

	// Retry queues the failed item alone, with its error cleared.
	if n, err := w.RetryFailedBulkItems(ctx, id, 30); err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	items, _ := db.Reader().ListBulkItems(ctx, id)
	if items[1].LastErrorKind != nil || items[1].Status != storage.BulkItemQueued {
		t.Fatalf("retried item: %+v", items[1])
	}
	if got := bulkStatuses(t, db, id); got != "queued a=success/2 b=queued/2 c=success/1" {
		t.Fatalf("after retry: %s", got)
	}
	if _, err := w.RetryFailedBulkItems(ctx, "nope", 30); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("retry of an unknown operation: %v", err)
	}
}

func TestBulkCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, id := bulkFixture(t, "a", "b")
	w := db.Writer()
	if _, err := w.ClaimBulkItems(ctx, 1, 20); err != nil {
		t.Fatal(err)
	}
	must(t, w.CancelBulkOperation(ctx, id, 21))
	if got := bulkStatuses(t, db, id); got != "canceled a=running/1 b=canceled/0" {
		t.Fatalf("after cancel: %s", got)
	}
	if claimed, _ := w.ClaimBulkItems(ctx, 8, 22); len(claimed) != 0 {
		t.Fatalf("claimed from a canceled operation: %+v", claimed)
	}
	o, _ := db.Reader().GetBulkOperation(ctx, id)
	if o.EndedAt != nil {
		t.Fatalf("ended while an item runs: %+v", o)
	}
	// The running item finishes; the operation stays canceled and ends.
	must(t, w.FinishBulkItem(ctx, id, "a", storage.BulkItemFailed, nil, nil, 23))
	o, _ = db.Reader().GetBulkOperation(ctx, id)
	if o.Status != storage.BulkCanceled || o.EndedAt == nil || *o.CanceledAt != 21 {
		t.Fatalf("canceled operation: %+v", o)
	}
	if _, err := w.RetryFailedBulkItems(ctx, id, 30); !errors.Is(err, storage.ErrBulkCanceled) {
		t.Fatalf("retry of a canceled operation: %v", err)
	}
	if err := w.CancelBulkOperation(ctx, "nope", 30); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("cancel of an unknown operation: %v", err)
	}
}

func TestAgentIDsByLabels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := bulkFixture(t, "a", "b", "c")
	must(t, db.Writer().AddAgentLabels(ctx, "a", []string{"prod", "eu"}, 1))
	must(t, db.Writer().AddAgentLabels(ctx, "b", []string{"prod"}, 1))
	must(t, db.Writer().AddAgentLabels(ctx, "c", []string{"eu"}, 1))
	for _, tc := range []struct {
		labels []string
		anyOf  bool
		want   string
	}{
		{[]string{"prod", "eu"}, false, "[a]"},
		{[]string{"prod", "eu"}, true, "[a b c]"},
		{[]string{"prod"}, false, "[a b]"},
		{[]string{"nope"}, true, "[]"},
	} {
		got, err := db.Reader().AgentIDsByLabels(ctx, tc.labels, tc.anyOf)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Fatalf("%v any=%v: %v %v, want %s", tc.labels, tc.anyOf, got, err, tc.want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

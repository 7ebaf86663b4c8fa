package storage_test

import (
	"context"
	"slices"
	"testing"

	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

func listedIDs(items []storage.RunListItem) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, it.ID)
	}
	return out
}

func TestListRunsFiltersAndPages(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	// job1 (Hub): a1@1 a2@2 a3@3; job2 (agent ag1): b1@1 b2@2. a2 and b2 start in the same second.
	seedJobAndRuns(t, db, "job1", "a1", "a2", "a3")
	seedJobAndRuns(t, db, "job2", "b1", "b2")
	err := db.Write(ctx, func(q storage.Q) error {
		mustExec(t, q, `INSERT INTO agents(id, name, key_hash, created_at, updated_at) VALUES ('ag1', 'nas', x'01', 1, 1)`)
		mustExec(t, q, `UPDATE jobs SET agent_id = 'ag1' WHERE id = 'job2'`)
		mustExec(t, q, `UPDATE runs SET status = 'failed', ingested_at = 9 WHERE id = 'b2'`)
		mustExec(t, q, `UPDATE runs SET status = 'success' WHERE id = 'a3'`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := db.Reader()
	list := func(f storage.RunFilter, after *storage.RunCursor, limit int) []storage.RunListItem {
		t.Helper()
		items, err := r.ListRuns(ctx, f, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		return items
	}
	all := list(storage.RunFilter{}, nil, 10)
	if got, want := listedIDs(all), []string{"a3", "b2", "a2", "b1", "a1"}; !slices.Equal(got, want) {
		t.Fatalf("all runs = %v, want %v", got, want)
	}
	if b2 := all[1]; b2.JobName != "job2" || b2.AgentID == nil || *b2.AgentID != "ag1" || !b2.ExecutedOffline {
		t.Fatalf("b2 = %+v", b2)
	}
	if a3 := all[0]; a3.AgentID != nil || a3.ExecutedOffline {
		t.Fatalf("a3 = %+v", a3)
	}

	// Pages of two through the (started_at, id) cursor see every run once, ties included.
	var paged []string
	var cur *storage.RunCursor
	for range 5 {
		page := list(storage.RunFilter{}, cur, 2)
		if len(page) == 0 {
			break
		}
		paged = append(paged, listedIDs(page)...)
		last := page[len(page)-1]
		cur = &storage.RunCursor{StartedAt: last.StartedAt, ID: last.ID}
	}
	if !slices.Equal(paged, listedIDs(all)) {
		t.Fatalf("paged = %v, want %v", paged, listedIDs(all))
	}

	from, to := int64(2), int64(3)
	for _, tc := range []struct {
		name string
		f    storage.RunFilter
		want []string
	}{
		{"statuses", storage.RunFilter{Statuses: []string{"failed", "success"}}, []string{"a3", "b2"}},
		{"job", storage.RunFilter{JobID: "job2"}, []string{"b2", "b1"}},
		{"hub node", storage.RunFilter{NodeID: "hub"}, []string{"a3", "a2", "a1"}},
		{"agent node", storage.RunFilter{NodeID: "ag1"}, []string{"b2", "b1"}},
		{"unknown node", storage.RunFilter{NodeID: "nope"}, []string{}},
		{"from inclusive, to exclusive", storage.RunFilter{From: &from, To: &to}, []string{"b2", "a2"}},
		{"combined", storage.RunFilter{Statuses: []string{"queued"}, NodeID: "hub", From: &from}, []string{"a2"}},
	} {
		if got := listedIDs(list(tc.f, nil, 10)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

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

func TestRunsKindQueryCountAndPositions(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	seedJobAndRuns(t, db, "job1", "a1", "a2", "a3", "a4")
	err := db.Write(ctx, func(q storage.Q) error {
		mustExec(t, q, `UPDATE runs SET progress_json = '{"kind":"restore"}' WHERE id = 'a1'`)
		mustExec(t, q, `UPDATE runs SET progress_json = '{"kind":"nonsense"}' WHERE id = 'a2'`)
		mustExec(t, q, `UPDATE runs SET progress_json = 'not json' WHERE id = 'a3'`)
		mustExec(t, q, `UPDATE runs SET error = 'disk 100%_full' WHERE id = 'a4'`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := db.Reader()
	for _, c := range []struct {
		f    storage.RunFilter
		want []string
	}{
		{storage.RunFilter{Kind: "restore"}, []string{"a1"}},
		// A kind outside the known ones, or progress that is not JSON, is a backup.
		{storage.RunFilter{Kind: "backup"}, []string{"a4", "a3", "a2"}},
		{storage.RunFilter{Query: "100%_F"}, []string{"a4"}},
		{storage.RunFilter{Query: "%"}, []string{"a4"}},
		{storage.RunFilter{Query: "JOB1"}, []string{"a4", "a3", "a2", "a1"}},
	} {
		items, err := r.ListRuns(ctx, c.f, nil, 10)
		if err != nil {
			t.Fatal(err)
		}
		n, err := r.CountRuns(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		if got := listedIDs(items); !slices.Equal(got, c.want) || n != int64(len(c.want)) {
			t.Errorf("%+v: %v (count %d), want %v", c.f, got, n, c.want)
		}
	}
	page, err := r.ListRunsAt(ctx, storage.RunFilter{}, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := listedIDs(page); !slices.Equal(got, []string{"a3", "a2"}) {
		t.Errorf("offset 1 limit 2 = %v", got)
	}
}

func TestJobOutcomesAndFirstError(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	seedJobAndRuns(t, db, "job1", "a1", "a2", "a3")
	seedJobAndRuns(t, db, "job2", "b1")
	err := db.Write(ctx, func(q storage.Q) error {
		mustExec(t, q, `UPDATE runs SET status = 'success', ended_at = 10 WHERE id = 'a1'`)
		mustExec(t, q, `UPDATE runs SET status = 'failed', ended_at = 20 WHERE id = 'a2'`)
		mustExec(t, q, `UPDATE runs SET status = 'failed', ended_at = 30 WHERE id = 'a3'`)
		mustExec(t, q, `UPDATE runs SET status = 'canceled', ended_at = 5 WHERE id = 'b1'`)
		return q.AppendRunEvents(ctx, []storage.RunEvent{
			{RunID: "a3", Level: "info", Kind: "start", Message: "start"},
			{RunID: "a3", Level: "warn", Kind: "failed", Message: "gave up"},
			{RunID: "a3", Level: "error", Kind: "upload", Message: "later"},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	r := db.Reader()
	o, err := r.JobOutcomesOf(ctx, []string{"job1", "job2", "nothing"})
	if err != nil {
		t.Fatal(err)
	}
	j1, j2 := o["job1"], o["job2"]
	if j1.LatestSuccessAt == nil || *j1.LatestSuccessAt != 10 || j1.LatestFailureAt == nil || *j1.LatestFailureAt != 30 || !j1.EverSucceeded {
		t.Errorf("job1 = %+v", j1)
	}
	if j2.LatestSuccessAt != nil || j2.LatestFailureAt != nil || j2.EverSucceeded {
		t.Errorf("job2 = %+v", j2)
	}
	if _, ok := o["nothing"]; ok {
		t.Error("a job without runs has an entry")
	}
	// A failed event counts as a failure whatever its level.
	if e, err := r.FirstErrorEvent(ctx, "a3"); err != nil || e == nil || e.Seq != 2 {
		t.Fatalf("first error of a3 = %+v, %v", e, err)
	}
	if e, err := r.FirstErrorEvent(ctx, "a1"); err != nil || e != nil {
		t.Fatalf("first error of a1 = %+v, %v", e, err)
	}
}

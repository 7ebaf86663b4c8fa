package storage

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func openMetricsDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "metrics.db"), Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func totalsByKey(t *testing.T, db *DB) map[string]RunTotal {
	t.Helper()
	var c MetricsCounts
	err := db.Read(context.Background(), func(q Q) error {
		var err error
		c, err = q.MetricsCounts(context.Background(), 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]RunTotal{}
	for _, rt := range c.RunTotals {
		out[rt.JobID+"/"+rt.Status] = rt
	}
	return out
}

// Run totals count each run once when it ends, whatever path ended it, and never go down when
// run history is pruned: /metrics serves them as counters.
func TestRunTotalsCountEachEndOnceAndSurvivePruning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openMetricsDB(t)
	w := db.Writer()
	for _, id := range []string{"j1", "j2"} {
		if err := w.InsertJob(ctx, Job{ID: id, Name: id, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
			MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	end := func(v int64) *int64 { return &v }
	// Inserted terminal (rejected; an uploaded offline run), and queued runs ended later.
	for _, r := range []Run{
		{ID: "rej", JobID: "j1", Status: RunRejected, StartedAt: 10, EndedAt: end(10)},
		{ID: "ok1", JobID: "j1", Status: RunQueued, StartedAt: 20},
		{ID: "ok2", JobID: "j1", Status: RunQueued, StartedAt: 30},
		{ID: "bad", JobID: "j1", Status: RunQueued, StartedAt: 40},
		{ID: "can", JobID: "j1", Status: RunQueued, StartedAt: 50},
		{ID: "other", JobID: "j2", Status: RunQueued, StartedAt: 60},
	} {
		if err := w.InsertRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := w.UpsertIngestedRun(ctx, Run{ID: "ing", JobID: "j2", Status: RunFailed, StartedAt: 5, EndedAt: end(6)}, "a1", 7); err != nil || !ok {
		t.Fatalf("ingest: %v %v", ok, err)
	}
	finish := func(id, status string, at int64) {
		t.Helper()
		if _, _, err := w.FinishRun(ctx, RunFinish{ID: id, Status: status, EndedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := w.ClaimRun(ctx, "ok1", 21); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	finish("ok1", RunSuccess, 25)
	finish("ok2", RunSuccess, 35)
	finish("ok2", RunFailed, 36) // already ended: first result wins, nothing counted
	finish("bad", RunFailed, 45)
	// A cancel requested while running wins over the success reported afterwards.
	if _, err := w.RequestRunCancel(ctx, "can", 51, nil, nil); err != nil {
		t.Fatal(err)
	}
	finish("can", RunSuccess, 55)
	// The same offline run uploaded again (its outcome rewritten) is still one run.
	if _, err := w.UpsertIngestedRun(ctx, Run{ID: "ing", JobID: "j2", Status: RunSuccess, StartedAt: 5, EndedAt: end(8)}, "a1", 9); err != nil {
		t.Fatal(err)
	}

	want := map[string]int64{"j1/rejected": 1, "j1/success": 2, "j1/failed": 1, "j1/canceled": 1, "j2/failed": 1}
	check := func(when string) {
		t.Helper()
		got := totalsByKey(t, db)
		if len(got) != len(want) {
			t.Errorf("%s: totals %v, want %v", when, got, want)
		}
		for k, n := range want {
			if got[k].Runs != n {
				t.Errorf("%s: %s = %d, want %d", when, k, got[k].Runs, n)
			}
		}
		if le := got["j1/success"].LastEndedAt; le == nil || *le != 35 {
			t.Errorf("%s: last success of j1 ended at %v, want 35", when, le)
		}
	}
	check("after the runs ended")

	if n, err := w.PruneRuns(ctx, 1000, 100); err != nil || n == 0 {
		t.Fatalf("prune: %d %v", n, err)
	}
	check("after pruning the run history")

	if err := w.DeleteJob(ctx, "j2"); err != nil {
		t.Fatal(err)
	}
	delete(want, "j2/failed")
	check("after deleting job j2")
}

// A migration that rebuilds the runs or notifications table drops its triggers; the totals
// would silently stop.
func TestMetricsTriggersExist(t *testing.T) {
	t.Parallel()
	db := openMetricsDB(t)
	for name, table := range map[string]string{"run_totals_on_insert": "runs", "run_totals_on_end": "runs",
		"notification_counts_on_insert": "notifications", "notification_counts_on_update": "notifications",
		"notification_counts_on_delete": "notifications"} {
		var tbl string
		err := db.Reader().QueryRow(context.Background(),
			`SELECT tbl_name FROM sqlite_master WHERE type = 'trigger' AND name = ?`, name).Scan(&tbl)
		if err != nil || tbl != table {
			t.Errorf("trigger %s on %s: %q, %v", name, table, tbl, err)
		}
	}
}

// The metrics queries run at every scrape. Only the small tables (jobs, agents, the run totals,
// the verification rows) may be read whole; the runs, notifications and snapshots tables only
// through an index.
func TestMetricsQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	db := openMetricsDB(t)
	small := []string{"jobs", "agents", "run_totals", "notification_counts", "job_verification"}
	for name, hq := range map[string]struct {
		query string
		args  []any
	}{
		"jobs":                   {qMetricsJobs, nil},
		"run totals":             {qMetricsRunTotals, nil},
		"runs in status":         {qMetricsRunsInStatus, []any{RunQueued}},
		"agents by state":        {qMetricsAgents, []any{1, 1}},
		"notifications by state": {qMetricsNotifications, nil},
		"snapshots by job":       {qMetricsSnapshots, nil},
		"verification":           {qMetricsVerify, nil},
	} {
		plan := explain(t, db, hq.query, hq.args)
		// The snapshot sums read the covering index alone, not every snapshot row with its JSON.
		if name == "snapshots by job" && !strings.Contains(strings.Join(plan, ";"), "COVERING INDEX run_artifacts_job_status_bytes") {
			t.Errorf("%s: plan %q reads the snapshot rows", name, plan)
		}
		for _, step := range plan {
			tbl, ok := strings.CutPrefix(step, "SCAN ")
			if !ok || strings.Contains(step, " USING ") {
				continue
			}
			tbl, _, _ = strings.Cut(tbl, " ")
			allowed := false
			for _, s := range small {
				allowed = allowed || tbl == s
			}
			if !allowed {
				t.Errorf("%s: full table scan %q in plan %q", name, step, plan)
			}
		}
	}
}

// notification_counts always equals a count of the notifications by status, through inserts,
// every status change the queue makes, and deletes by cascade when runs are pruned.
func TestNotificationCountsFollowTheTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openMetricsDB(t)
	w := db.Writer()
	if err := w.InsertJob(ctx, Job{ID: "j", Name: "j", ScheduleTimezone: "UTC", OverlapPolicy: "queue",
		MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	ended := int64(10)
	for _, id := range []string{"r1", "r2"} {
		if err := w.InsertRun(ctx, Run{ID: id, JobID: "j", Status: RunFailed, StartedAt: 5, EndedAt: &ended}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		var c MetricsCounts
		if err := db.Read(ctx, func(q Q) error {
			var err error
			c, err = q.MetricsCounts(ctx, 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		rows, err := db.Reader().Query(ctx, `SELECT status, COUNT(*) FROM notifications GROUP BY status`)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{}
		for rows.Next() {
			var s string
			var n int64
			if err := rows.Scan(&s, &n); err != nil {
				t.Fatal(err)
			}
			want[s] = n
		}
		rows.Close()
		for s, n := range c.Notifications {
			if n != want[s] {
				t.Errorf("%s: %s = %d, the table has %d", when, s, n, want[s])
			}
		}
		for s, n := range want {
			if c.Notifications[s] != n {
				t.Errorf("%s: %s = %d, the table has %d", when, s, c.Notifications[s], n)
			}
		}
	}
	for i, dest := range []string{"a", "b", "c", "d"} {
		run := []string{"r1", "r2"}[i%2]
		if _, err := w.InsertNotification(ctx, Notification{ID: "n-" + dest, RunID: run, Channel: "email", SecretName: dest,
			Status: NotificationQueued, NextAttemptAt: 1, CreatedAt: 1, UpdatedAt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// The same destination again is ignored, and must not count.
	if _, err := w.InsertNotification(ctx, Notification{ID: "n-dup", RunID: "r1", Channel: "email", SecretName: "a",
		Status: NotificationQueued, NextAttemptAt: 1, CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	check("queued")
	n, err := w.ClaimNotification(ctx, 2, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	check("one sending")
	if ok, err := w.CompleteNotification(ctx, n.ID, 100, NotificationOutcome{Status: NotificationFailed, Attempts: 1}, 3); err != nil || !ok {
		t.Fatalf("complete: %v %v", ok, err)
	}
	check("one failed")
	if _, err := w.Exec(ctx, qCancelQueuedForDestination, "gone", 4, "email", "b"); err != nil {
		t.Fatal(err)
	}
	check("one canceled")
	if _, err := w.PruneRuns(ctx, 1000, 1); err != nil {
		t.Fatal(err)
	}
	check("after pruning a run")
}

// Snapshot sizes are reported by agents: whatever is stored, the sums /metrics and the dashboard
// read must not fail (SQLite's SUM errors on overflow) and must not go negative.
func TestSnapshotByteSumsSurviveHostileSizes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openMetricsDB(t)
	w := db.Writer()
	if err := w.InsertJob(ctx, Job{ID: "j1", Name: "j1", ScheduleTimezone: "UTC", OverlapPolicy: "queue",
		MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	size := func(v int64) *int64 { return &v }
	for i, b := range []*int64{size(1 << 62), size(1 << 62), size(1 << 62), size(-(1 << 62)), size(100)} {
		id := fmt.Sprintf("r%d", i)
		end := int64(100 + i)
		if ok, err := w.UpsertIngestedRun(ctx, Run{ID: id, JobID: "j1", Status: RunSuccess, StartedAt: end - 1, EndedAt: &end}, "a1", end); err != nil || !ok {
			t.Fatalf("ingest %s: %v %v", id, ok, err)
		}
		if err := w.UpsertRunArtifact(ctx, RunArtifact{RunID: id, JobID: "j1", NodeID: "hub", TargetType: "local_dir",
			TargetSnapshotJSON: "{}", ArtifactFormat: "archive_v1", Status: SnapshotPresent, StartedAt: end - 1, EndedAt: end,
			TransferBytes: b, CreatedAt: end, UpdatedAt: end}); err != nil {
			t.Fatal(err)
		}
	}
	var c MetricsCounts
	var totals []RunTotals
	err := db.Read(ctx, func(q Q) error {
		var err error
		if c, err = q.MetricsCounts(ctx, 0); err != nil {
			return err
		}
		totals, err = q.RunTotalsBetween(ctx, []int64{0, 1000})
		return err
	})
	if err != nil {
		t.Fatalf("sums over hostile sizes: %v", err)
	}
	if len(c.Snapshots) != 1 || c.Snapshots[0].Count != 5 || c.Snapshots[0].Bytes != math.MaxInt64 {
		t.Fatalf("metrics snapshots = %+v, want 5 saturated at MaxInt64", c.Snapshots)
	}
	if len(totals) != 1 || totals[0].Bytes != math.MaxInt64 || totals[0].Success != 5 {
		t.Fatalf("dashboard totals = %+v", totals)
	}
}

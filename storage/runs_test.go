package storage_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

func TestClaimRunSerialisesAJob(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	seedJobAndRuns(t, db, "job1", "r1", "r2")
	seedJobAndRuns(t, db, "job2", "r3")

	queued, err := db.Reader().ListQueuedHubRuns(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	// One candidate per job: its oldest queued run.
	if len(queued) != 2 || queued[0].Run.ID != "r1" || queued[0].Job.ID != "job1" || queued[1].Run.ID != "r3" {
		t.Fatalf("queued = %+v, want r1 and r3", queued)
	}
	if ok, err := db.Writer().ClaimRun(ctx, "r1", 10); err != nil || !ok {
		t.Fatalf("claim r1 = %v %v", ok, err)
	}
	if ok, err := db.Writer().ClaimRun(ctx, "r2", 10); err != nil || ok {
		t.Fatalf("claim r2 while r1 of the same job runs = %v %v, want false", ok, err)
	}
	if ok, err := db.Writer().ClaimRun(ctx, "r3", 10); err != nil || !ok {
		t.Fatalf("claim r3 of another job = %v %v", ok, err)
	}
	queued, _ = db.Reader().ListQueuedHubRuns(ctx, 10)
	if len(queued) != 0 {
		t.Fatalf("queued while both jobs run = %+v", queued)
	}
	if active, err := db.Reader().HasActiveRun(ctx, "job1"); err != nil || !active {
		t.Fatalf("HasActiveRun(job1) = %v %v", active, err)
	}
	r, _ := db.Reader().GetRun(ctx, "r1")
	if r.Status != storage.RunRunning || r.StartedAt != 10 {
		t.Fatalf("claimed run = %+v", r)
	}
}

func TestFinishRunFirstResultAndCancelWin(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	seedJobAndRuns(t, db, "job1", "r1", "r2")
	w := db.Writer()

	run, applied, err := w.FinishRun(ctx, storage.RunFinish{ID: "r1", Status: storage.RunSuccess, EndedAt: 5, SummaryJSON: ptr(`{"a":1}`)})
	if err != nil || !applied || run.Status != storage.RunSuccess || *run.SummaryJSON != `{"a":1}` {
		t.Fatalf("first finish = %+v %v %v", run, applied, err)
	}
	run, applied, err = w.FinishRun(ctx, storage.RunFinish{ID: "r1", Status: storage.RunFailed, EndedAt: 6, Error: ptr("boom")})
	if err != nil || applied || run.Status != storage.RunSuccess || *run.EndedAt != 5 {
		t.Fatalf("second finish = %+v %v %v, want the first kept", run, applied, err)
	}

	if ok, err := w.RequestRunCancel(ctx, "r2", 7, ptr(int64(1)), ptr("stop")); err != nil || !ok {
		t.Fatalf("cancel = %v %v", ok, err)
	}
	if ok, _ := w.RequestRunCancel(ctx, "r2", 8, nil, ptr("again")); ok {
		t.Fatal("a second cancel request was recorded")
	}
	run, applied, err = w.FinishRun(ctx, storage.RunFinish{ID: "r2", Status: storage.RunSuccess, EndedAt: 9, SummaryJSON: ptr(`{}`)})
	if err != nil || !applied || run.Status != storage.RunCanceled || run.SummaryJSON != nil || *run.Error != "canceled" ||
		*run.CancelReason != "stop" || *run.CancelRequestedAt != 7 {
		t.Fatalf("success after cancel = %+v %v %v, want canceled", run, applied, err)
	}
	if ok, _ := w.SetRunProgress(ctx, "r2", `{}`); ok {
		t.Fatal("progress written to a finished run")
	}
}

func TestInterruptedRunsSpareAgentRunsWithOpenTasks(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	seedJobAndRuns(t, db, "hubjob", "hubrun", "hubqueued")
	w := db.Writer()
	mustExec(t, w, `INSERT INTO agents(id, key_hash, created_at, updated_at) VALUES ('a1', x'01', 1, 1)`)
	mustExec(t, w, `INSERT INTO jobs(id, name, agent_id, spec_json, created_at, updated_at) VALUES ('ajob', 'a', 'a1', '{}', 1, 1)`)
	for _, id := range []string{"open", "closed"} {
		mustExec(t, w, `INSERT INTO runs(id, job_id, status, started_at) VALUES (?, 'ajob', 'running', 1)`, id)
	}
	mustExec(t, w, `INSERT INTO agent_tasks(id, agent_id, run_id, status, payload_json, created_at, updated_at) VALUES ('open','a1','open','sent','{}',1,1)`)
	mustExec(t, w, `INSERT INTO agent_tasks(id, agent_id, run_id, status, payload_json, completed_at, created_at, updated_at) VALUES ('closed','a1','closed','done','{}',2,1,1)`)
	mustExec(t, w, `UPDATE runs SET status = 'running' WHERE id = 'hubrun'`)

	got, err := db.Reader().ListInterruptedRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range got {
		ids[r.ID] = true
	}
	if len(got) != 2 || !ids["hubrun"] || !ids["closed"] {
		t.Fatalf("interrupted = %v, want hubrun and closed", ids)
	}
}

func TestPruneRunsSparesLiveSnapshots(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	seedJobAndRuns(t, db, "job1", "old", "present", "deleting", "error", "deleted", "recent", "live")
	w := db.Writer()
	mustExec(t, w, `UPDATE runs SET status = 'success', ended_at = 100 WHERE id != 'live'`)
	mustExec(t, w, `UPDATE runs SET ended_at = 1000 WHERE id = 'recent'`)
	for _, st := range []string{"present", "deleting", "error", "deleted"} {
		mustExec(t, w, `INSERT INTO run_artifacts(run_id, job_id, node_id, target_type, target_snapshot_json, artifact_format,
			status, started_at, ended_at, created_at, updated_at) VALUES (?, 'job1', 'hub', 'local_dir', '{}', 'archive_v1', ?, 1, 100, 1, 1)`, st, st)
	}
	n, err := w.PruneRuns(ctx, 500, 2)
	if err != nil || n != 2 {
		t.Fatalf("first batch = %d %v, want 2 (limit)", n, err)
	}
	n, _ = w.PruneRuns(ctx, 500, 2)
	if n != 0 {
		t.Fatalf("second batch = %d, want 0", n)
	}
	var left []string
	rows, _ := db.Reader().Query(ctx, `SELECT id FROM runs ORDER BY id`)
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		left = append(left, id)
	}
	rows.Close()
	want := "deleting error live present recent"
	if got := joinIDs(left); got != want {
		t.Fatalf("runs left = %q, want %q", got, want)
	}
}

func joinIDs(ids []string) string {
	out := ""
	for i, id := range ids {
		if i > 0 {
			out += " "
		}
		out += id
	}
	return out
}

func TestListJobsFiltersSortsAndPages(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	w := db.Writer()
	mustExec(t, w, `INSERT INTO agents(id, key_hash, created_at, updated_at) VALUES ('a1', x'01', 1, 1)`)
	for i, j := range []struct {
		id, name string
		agent    *string
		schedule *string
		archived *int64
	}{
		{"j1", "Alpha", nil, ptr("0 3 * * *"), nil},
		{"j2", "beta_db", ptr("a1"), nil, nil},
		{"j3", "Gamma", nil, nil, ptr(int64(5))},
		{"j4", "delta%", nil, ptr("*/5 * * * *"), nil},
	} {
		if err := w.InsertJob(ctx, storage.Job{ID: j.id, Name: j.name, AgentID: j.agent, Schedule: j.schedule,
			ScheduleTimezone: "UTC", OverlapPolicy: "queue", MissedRunPolicy: "run_once", SpecJSON: "{}",
			CreatedAt: 1, UpdatedAt: int64(10 + i), ArchivedAt: j.archived}); err != nil {
			t.Fatal(err)
		}
	}
	mustExec(t, w, `INSERT INTO runs(id, job_id, status, started_at, ended_at) VALUES ('r1','j1','failed',5,6), ('r2','j1','success',7,8), ('r3','j2','running',9,NULL)`)

	list := func(f storage.JobFilter) ([]string, int) {
		t.Helper()
		var ids []string
		var total int
		err := db.Read(ctx, func(q storage.Q) error {
			items, n, err := q.ListJobs(ctx, f)
			for _, it := range items {
				ids = append(ids, it.ID)
				if it.ID == "j1" && (it.LatestRunID == nil || *it.LatestRunID != "r2" || *it.LatestRunStatus != "success" || *it.LatestRunEndedAt != 8) {
					t.Errorf("latest run of j1 = %v %v", it.LatestRunID, it.LatestRunStatus)
				}
			}
			total = n
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids, total
	}
	for _, tc := range []struct {
		name  string
		f     storage.JobFilter
		want  string
		total int
	}{
		{"DefaultHidesArchivedNewestFirst", storage.JobFilter{}, "j4 j2 j1", 3},
		{"IncludeArchived", storage.JobFilter{IncludeArchived: true, Sort: "updated_asc"}, "j1 j2 j3 j4", 4},
		{"HubOnly", storage.JobFilter{HubOnly: true}, "j4 j1", 2},
		{"Agent", storage.JobFilter{AgentID: "a1"}, "j2", 1},
		{"QueryIsCaseInsensitiveAndLiteral", storage.JobFilter{Query: "ALP"}, "j1", 1},
		{"QueryEscapesWildcards", storage.JobFilter{Query: "_"}, "j2", 1},
		{"QueryPercent", storage.JobFilter{Query: "%"}, "j4", 1},
		{"LatestStatus", storage.JobFilter{LatestStatus: "success"}, "j1", 1},
		{"LatestStatusNever", storage.JobFilter{LatestStatus: "never"}, "j4", 1},
		{"Manual", storage.JobFilter{ScheduleMode: "manual", IncludeArchived: true}, "j3 j2", 2},
		{"Scheduled", storage.JobFilter{ScheduleMode: "scheduled"}, "j4 j1", 2},
		{"NameAsc", storage.JobFilter{Sort: "name_asc"}, "j1 j2 j4", 3},
		{"NameDescPaged", storage.JobFilter{Sort: "name_desc", Limit: 2, Offset: 1}, "j2 j1", 3},
		{"PageBeyondEnd", storage.JobFilter{Limit: 2, Offset: 10}, "", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, total := list(tc.f)
			if got := joinIDs(ids); got != tc.want || total != tc.total {
				t.Fatalf("ids = %q total %d, want %q total %d", got, total, tc.want, tc.total)
			}
		})
	}
}

func TestArchiveUnarchiveAndMarkScheduled(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	w := db.Writer()
	if err := w.InsertJob(ctx, storage.Job{ID: "j", Name: "j", Schedule: ptr("* * * * *"), ScheduleTimezone: "UTC",
		OverlapPolicy: "queue", MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	if ok, err := w.MarkJobScheduled(ctx, "j", 1, nil, 60); err != nil || !ok {
		t.Fatalf("mark = %v %v", ok, err)
	}
	if ok, _ := w.MarkJobScheduled(ctx, "j", 1, nil, 120); ok {
		t.Fatal("mark with a stale last_scheduled_at applied")
	}
	if ok, _ := w.MarkJobScheduled(ctx, "j", 2, ptr(int64(60)), 120); ok {
		t.Fatal("mark with a stale updated_at applied")
	}
	if err := w.ArchiveJob(ctx, "j", 100); err != nil {
		t.Fatal(err)
	}
	if err := w.ArchiveJob(ctx, "j", 200); err != nil {
		t.Fatal(err)
	}
	if ok, _ := w.MarkJobScheduled(ctx, "j", 1, ptr(int64(60)), 120); ok {
		t.Fatal("an archived job was marked scheduled")
	}
	j, _ := w.GetJob(ctx, "j")
	if j.ArchivedAt == nil || *j.ArchivedAt != 100 || j.UpdatedAt != 1 {
		t.Fatalf("archived job = %+v, want archived_at kept at 100", j)
	}
	if err := w.UnarchiveJob(ctx, "j", 300); err != nil {
		t.Fatal(err)
	}
	j, _ = w.GetJob(ctx, "j")
	if j.ArchivedAt != nil || j.UpdatedAt != 300 {
		t.Fatalf("unarchived job = %+v", j)
	}
	if err := w.ArchiveJob(ctx, "missing", 1); err == nil {
		t.Fatal("archive of a missing job succeeded")
	}
}

// TestRunsOfAJobAgreeWithTheLatestRun: runs started in the same second are ordered by insertion,
// newest first, in the run list as in the job list's latest run, whatever plan SQLite picks (the
// index is dropped to take the accident of a backward index walk out of it).
func TestRunsOfAJobAgreeWithTheLatestRun(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	seedJobAndRuns(t, db, "j")
	for _, id := range []string{"zz", "aa", "mm"} { // ids in no particular order
		if err := db.Writer().InsertRun(ctx, storage.Run{ID: id, JobID: "j", Status: storage.RunSuccess, StartedAt: 5}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Writer().Exec(ctx, `DROP INDEX runs_job_id_started_at`); err != nil {
		t.Fatal(err)
	}
	list, err := db.Reader().ListRunsByJob(ctx, "j", 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range list {
		ids = append(ids, r.ID)
	}
	if fmt.Sprint(ids) != "[mm aa zz]" {
		t.Fatalf("runs of the job = %v, want the last inserted first", ids)
	}
	jobs, _, err := db.Reader().ListJobs(ctx, storage.JobFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].LatestRunID == nil || *jobs[0].LatestRunID != ids[0] {
		t.Fatalf("latest run in the job list = %v, run list starts with %s", jobs[0].LatestRunID, ids[0])
	}
}

func TestListLiveRunIDs(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	seedJobAndRuns(t, db, "j", "queued", "running", "done")
	seedJobAndRuns(t, db, "other", "other-queued")
	if _, err := db.Writer().Exec(ctx, `UPDATE runs SET status = CASE id WHEN 'running' THEN 'running' ELSE 'success' END
		WHERE id IN ('running', 'done')`); err != nil {
		t.Fatal(err)
	}
	ids, err := db.Reader().ListLiveRunIDs(ctx, "j")
	slices.Sort(ids)
	if err != nil || fmt.Sprint(ids) != "[queued running]" {
		t.Fatalf("live runs of j = %v %v, want queued and running", ids, err)
	}
	if ids, err := db.Reader().ListLiveRunIDs(ctx, "none"); err != nil || len(ids) != 0 {
		t.Fatalf("live runs of a missing job = %v %v", ids, err)
	}
}

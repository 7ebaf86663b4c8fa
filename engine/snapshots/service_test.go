package snapshots

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

type bundle struct {
	db     *storage.DB
	clock  *clock.Fake
	svc    *Service
	base   string
	opener *switchOpener
}

// switchOpener opens local directories, or fails with a chosen error (fault injection).
type switchOpener struct {
	mu   sync.Mutex
	fail error
}

func (o *switchOpener) Open(ctx context.Context, rt targets.RunTarget) (targets.Target, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return nil, o.fail
	}
	dir, _ := all.Registry.LocalPathOf(rt.Target)
	return localdir.New(dir)
}

func (o *switchOpener) setFail(err error) { o.mu.Lock(); o.fail = err; o.mu.Unlock() }

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{db: storagetest.Open(t), clock: clock.NewFake(now), base: t.TempDir(), opener: &switchOpener{}}
	b.svc = New(Config{DB: b.db, Clock: b.clock, Opener: b.opener, Logger: zerolog.New(zerolog.NewTestWriter(t)), IncompleteCleanupDays: 7})
	return b
}

const jobID = "11111111-1111-4111-8111-111111111111"

// seed creates the job and, per run, a run row, a complete run directory and a present snapshot
// ended `age` ago.
func (b *bundle) seed(t *testing.T, runs map[string]time.Duration, status string) {
	t.Helper()
	ctx := context.Background()
	rt, _ := json.Marshal(targets.RunTarget{NodeID: "hub", Target: localdir.Redact(b.base)})
	err := b.db.Write(ctx, func(q storage.Q) error {
		if _, err := q.GetJob(ctx, jobID); errors.Is(err, storage.ErrNotFound) {
			if err := q.InsertJob(ctx, storage.Job{ID: jobID, Name: "j", ScheduleTimezone: "UTC", OverlapPolicy: "queue",
				MissedRunPolicy: "run_once", SpecJSON: `{"v":1,"type":"filesystem","source":{"paths":["/x"]},"target":{"type":"local_dir","base_dir":"/b"}}`,
				CreatedAt: 1, UpdatedAt: 1}); err != nil {
				return err
			}
		}
		for id, age := range runs {
			ended := now.Add(-age).Unix()
			rts := string(rt)
			if err := q.InsertRun(ctx, storage.Run{ID: id, JobID: jobID, Status: status, StartedAt: ended - 60, EndedAt: &ended,
				TargetSnapshotJSON: &rts}); err != nil {
				return err
			}
			if status == storage.RunSuccess {
				if err := q.UpsertRunArtifact(ctx, storage.RunArtifact{RunID: id, JobID: jobID, NodeID: "hub", TargetType: "local_dir",
					TargetSnapshotJSON: rts, ArtifactFormat: "archive_v1", Status: storage.SnapshotPresent, StartedAt: ended - 60,
					EndedAt: ended, CreatedAt: ended, UpdatedAt: ended}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id := range runs {
		dir := filepath.Join(b.base, jobID, id)
		must(t, os.MkdirAll(dir, 0o700))
		must(t, os.WriteFile(filepath.Join(dir, "payload.part000001"), []byte("data"), 0o600))
		must(t, os.WriteFile(filepath.Join(dir, "manifest.json"), []byte("{}"), 0o600))
		if status == storage.RunSuccess {
			must(t, os.WriteFile(filepath.Join(dir, "complete.json"), []byte("{}"), 0o600))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) snapshotStatus(t *testing.T, runID string) string {
	a, err := b.db.Reader().GetRunArtifact(context.Background(), jobID, runID)
	must(t, err)
	return a.Status
}

func (b *bundle) task(t *testing.T, tq storage.TaskQueue, runID string) storage.Task {
	tk, err := b.db.Reader().GetTask(context.Background(), tq, runID)
	must(t, err)
	return tk
}

// runLoop starts a loop and returns a function that stops it.
func runLoop(t *testing.T, loop func(context.Context) error) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- loop(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("loop returned %v", err)
		}
	}
}

// waitFor polls cond until it holds or the test deadline nears.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestManualDeleteRespectsPinAndRemovesData(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.seed(t, map[string]time.Duration{"r1": time.Hour, "r2": 2 * time.Hour}, storage.RunSuccess)
	must(t, b.db.Writer().SetSnapshotPinned(ctx, jobID, "r1", true, nil, now.Unix()))

	if err := b.svc.RequestDelete(ctx, jobID, "r1", false); !errors.Is(err, ErrPinned) {
		t.Fatalf("delete of a pinned snapshot = %v, want ErrPinned", err)
	}
	if err := b.svc.RequestDelete(ctx, jobID, "nope", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of a missing snapshot = %v", err)
	}
	must(t, b.svc.RequestDelete(ctx, jobID, "r1", true))
	must(t, b.svc.RequestDelete(ctx, jobID, "r2", false))
	if st := b.snapshotStatus(t, "r2"); st != storage.SnapshotDeleting {
		t.Fatalf("status after request = %s", st)
	}
	stop := runLoop(t, b.svc.RunDeletes)
	defer stop()
	waitFor(t, "both deletes done", func() bool {
		return b.snapshotStatus(t, "r1") == storage.SnapshotDeleted && b.snapshotStatus(t, "r2") == storage.SnapshotDeleted
	})
	if _, err := os.Stat(filepath.Join(b.base, jobID, "r1")); !os.IsNotExist(err) {
		t.Fatalf("run directory still there: %v", err)
	}
	if err := b.svc.RequestDelete(ctx, jobID, "r2", false); err != nil {
		t.Fatalf("deleting a deleted snapshot again = %v, want a no-op", err)
	}
}

func TestAlreadyGoneIsMissing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(t, map[string]time.Duration{"r1": time.Hour}, storage.RunSuccess)
	must(t, os.RemoveAll(filepath.Join(b.base, jobID, "r1")))
	must(t, b.svc.RequestDelete(context.Background(), jobID, "r1", false))
	stop := runLoop(t, b.svc.RunDeletes)
	defer stop()
	waitFor(t, "missing", func() bool { return b.snapshotStatus(t, "r1") == storage.SnapshotMissing })
	if tk := b.task(t, storage.DeleteQueue, "r1"); tk.Status != storage.TaskDone {
		t.Fatalf("task %s", tk.Status)
	}
}

func TestFailuresBackOffBlockAndAbandon(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.seed(t, map[string]time.Duration{"r1": time.Hour}, storage.RunSuccess)
	b.opener.setFail(&targets.Error{Kind: targets.KindNetwork, Code: "webdav_network", Op: "delete"})
	must(t, b.svc.RequestDelete(ctx, jobID, "r1", false))
	stop := runLoop(t, b.svc.RunDeletes)
	defer stop()

	waitFor(t, "first failure", func() bool { return b.task(t, storage.DeleteQueue, "r1").Status == storage.TaskRetrying })
	tk := b.task(t, storage.DeleteQueue, "r1")
	wait := time.Unix(tk.NextAttemptAt, 0).Sub(now)
	if wait < time.Minute || wait > time.Minute+30*time.Second {
		t.Fatalf("first network retry in %v, want 60 s plus up to 30 s jitter", wait)
	}
	if st := b.snapshotStatus(t, "r1"); st != storage.SnapshotDeleting {
		t.Fatalf("snapshot during retries: %s", st)
	}
	// The loop sleeps exactly until the retry is due.
	waitFor(t, "timer armed for the retry", func() bool {
		d, ok := b.clock.NextDeadline()
		return ok && d.Unix() == tk.NextAttemptAt
	})

	b.opener.setFail(&targets.Error{Kind: targets.KindAuth, Code: "webdav_auth", Op: "delete"})
	b.clock.Set(time.Unix(tk.NextAttemptAt, 0))
	waitFor(t, "blocked", func() bool { return b.task(t, storage.DeleteQueue, "r1").Status == storage.TaskBlocked })
	if st := b.snapshotStatus(t, "r1"); st != storage.SnapshotError {
		t.Fatalf("snapshot after an auth failure: %s", st)
	}

	// Keep failing until the attempt limit.
	must(t, b.db.Writer().RetryTaskNow(ctx, storage.DeleteQueue, "r1", b.clock.Now().Unix()))
	_, err := b.db.Writer().Exec(ctx, `UPDATE artifact_delete_tasks SET attempts = ? WHERE run_id = 'r1'`, MaxAttempts-1)
	must(t, err)
	b.svc.WakeDeletes()
	waitFor(t, "abandoned", func() bool { return b.task(t, storage.DeleteQueue, "r1").Status == storage.TaskAbandoned })
}

func TestTaskRunningAtCrashIsRetriedAtStart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.seed(t, map[string]time.Duration{"r1": time.Hour}, storage.RunSuccess)
	must(t, b.svc.RequestDelete(ctx, jobID, "r1", false))
	must(t, b.db.Write(ctx, func(q storage.Q) error {
		_, err := q.ClaimDueTasks(ctx, storage.DeleteQueue, now.Unix(), 1)
		return err
	}))
	stop := runLoop(t, b.svc.RunDeletes)
	defer stop()
	waitFor(t, "deleted after restart", func() bool { return b.snapshotStatus(t, "r1") == storage.SnapshotDeleted })
}

func TestArchiveCascadeWalksEveryPageAndSkipsPinned(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	runs := map[string]time.Duration{}
	for i := range 450 {
		runs[fmt.Sprintf("r%03d", i)] = time.Duration(i%7) * time.Hour // ties in ended_at across pages
	}
	b.seed(t, runs, storage.RunSuccess)
	must(t, b.db.Writer().SetSnapshotPinned(ctx, jobID, "r007", true, nil, now.Unix()))
	must(t, b.db.Writer().SetSnapshotPinned(ctx, jobID, "r300", true, nil, now.Unix()))
	n, err := b.svc.CascadeArchive(ctx, jobID)
	must(t, err)
	if n != 448 {
		t.Fatalf("queued %d deletes, want 448", n)
	}
	var deleting int
	must(t, b.db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM run_artifacts WHERE status = 'deleting'`).Scan(&deleting))
	if deleting != 448 || b.snapshotStatus(t, "r007") != storage.SnapshotPresent {
		t.Fatalf("%d deleting, pinned r007 is %s", deleting, b.snapshotStatus(t, "r007"))
	}
}

func TestRetentionApplyObeysCaps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	runs := map[string]time.Duration{}
	for i := range 10 {
		runs[fmt.Sprintf("r%d", i)] = time.Duration(i) * time.Hour
	}
	b.seed(t, runs, storage.RunSuccess)
	pol := jobspec.Retention{Enabled: true, KeepLast: ptr(2), MaxDeletePerTick: 3, MaxDeletePerDay: 5}

	plan, err := b.svc.Preview(ctx, jobID, &pol)
	must(t, err)
	if len(plan.Delete) != 8 || plan.Delete[0].RunID != "r9" {
		t.Fatalf("preview deletes %v", ids(plan.Delete))
	}
	if st := b.snapshotStatus(t, "r9"); st != storage.SnapshotPresent {
		t.Fatal("preview changed a snapshot")
	}
	res, err := b.svc.Apply(ctx, jobID, &pol)
	must(t, err)
	if fmt.Sprint(res.Enqueued) != "[r9 r8 r7]" || res.SkippedDueToLimits != 5 {
		t.Fatalf("first pass %+v, want the 3 oldest and 5 skipped", res)
	}
	res, err = b.svc.Apply(ctx, jobID, &pol)
	must(t, err)
	if len(res.Enqueued) != 2 {
		t.Fatalf("second pass enqueued %v, want 2 (day cap 5)", res.Enqueued)
	}
	res, err = b.svc.Apply(ctx, jobID, &pol)
	must(t, err)
	if len(res.Enqueued) != 0 {
		t.Fatalf("third pass enqueued %v past the day cap", res.Enqueued)
	}
	b.clock.Advance(24 * time.Hour) // a new UTC day
	res, err = b.svc.Apply(ctx, jobID, &pol)
	must(t, err)
	if len(res.Enqueued) == 0 {
		t.Fatal("nothing enqueued on a new day")
	}
}

func TestCleanupRemovesOldFailedRunsOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(t, map[string]time.Duration{"old": 8 * 24 * time.Hour, "young": 24 * time.Hour}, storage.RunFailed)
	stop := runLoop(t, b.svc.RunCleanup)
	defer stop()
	waitFor(t, "old run cleaned", func() bool {
		tk, err := b.db.Reader().GetTask(context.Background(), storage.CleanupQueue, "old")
		return err == nil && tk.Status == storage.TaskDone
	})
	if _, err := os.Stat(filepath.Join(b.base, jobID, "old")); !os.IsNotExist(err) {
		t.Fatalf("old run's leftovers still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b.base, jobID, "young", "payload.part000001")); err != nil {
		t.Fatalf("a recent failed run was touched: %v", err)
	}
	if _, err := b.db.Reader().GetTask(context.Background(), storage.CleanupQueue, "young"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("young run got a task: %v", err)
	}
}

// A run that did not succeed but left complete data — a success that lost to a cancel, a result
// that came after the run was failed, a crash after the last write — is no snapshot; cleanup
// removes it rather than leaving an orphan nothing will ever list or delete.
func TestCleanupRemovesCompleteDataOfRunsThatDidNotSucceed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(t, map[string]time.Duration{"canceled-late": 8 * 24 * time.Hour}, storage.RunCanceled)
	dir := filepath.Join(b.base, jobID, "canceled-late")
	must(t, os.WriteFile(filepath.Join(dir, "complete.json"), []byte("{}"), 0o600))
	stop := runLoop(t, b.svc.RunCleanup)
	defer stop()
	waitFor(t, "orphan removed", func() bool {
		tk, err := b.db.Reader().GetTask(context.Background(), storage.CleanupQueue, "canceled-late")
		return err == nil && tk.Status == storage.TaskDone
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("complete data of a canceled run is still on the target: %v", err)
	}
	evs, err := b.db.Reader().ListTaskEvents(context.Background(), storage.CleanupQueue, "canceled-late", 10)
	must(t, err)
	if len(evs) == 0 || evs[len(evs)-1].Kind != "orphan_removed" {
		t.Fatalf("events = %+v, want orphan_removed last", evs)
	}
}

package agentsock_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/engine/backupexec"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

type runsBundle struct {
	th  *testHub
	svc *runs.Service
	ra  *runningAgent
	ex  *countingExecutor
	job storage.Job
}

// setupRuns runs the real run queue with the bridge, a Hub and a connected in-process agent, and
// a job bound to that agent.
func setupRuns(t *testing.T) *runsBundle {
	t.Helper()
	db := storagetest.Open(t)
	bridge := agentsock.NewRunBridge()
	th := newTestHub(t, hubOpts{db: db, bridge: bridge, ackTimeout: time.Second})
	svc := runs.New(runs.Config{DB: db, Clock: clock.Real{}, Log: zerolog.New(zerolog.NewTestWriter(t)), Agents: bridge})
	bridge.Attach(th.hub, svc)
	runLoop(t, svc.Run)
	ex := newExecutor()
	ra := startAgent(t, th.url, newEnrollToken(t, db, nil), t.TempDir(), ex, time.Second)
	waitFor(t, "agent connected", func() bool { return th.hub.Connected(ra.a.ID()) })
	id := ra.a.ID()
	job := storage.Job{ID: "job-1", Name: "on agent", AgentID: &id, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
		MissedRunPolicy: "run_once", SpecJSON: `{"v":1,"type":"filesystem","source":{"paths":["/srv/app"]},"target":{"type":"local_dir","base_dir":"/srv/bk"}}`,
		CreatedAt: 1, UpdatedAt: 1}
	if err := db.Writer().InsertJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	return &runsBundle{th: th, svc: svc, ra: ra, ex: ex, job: job}
}

func (b *runsBundle) run(t *testing.T, id string) storage.Run {
	t.Helper()
	r, err := b.th.db.Reader().GetRun(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (b *runsBundle) kinds(t *testing.T, runID string) []string {
	t.Helper()
	evs, err := b.th.db.Reader().ListRunEvents(context.Background(), runID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

func TestAgentRunThroughRunQueue(t *testing.T) {
	t.Parallel()
	b := setupRuns(t)
	r, err := b.svc.Trigger(context.Background(), b.job.ID, runs.SourceManual)
	if err != nil {
		t.Fatal(err)
	}
	<-b.ex.started
	if got := b.run(t, r.ID); got.Status != storage.RunRunning || got.TargetSnapshotJSON == nil {
		t.Fatalf("run while the agent works: %+v", got)
	}
	close(b.ex.release)
	waitFor(t, "run succeeded", func() bool { return b.run(t, r.ID).Status == storage.RunSuccess })
	waitFor(t, "task completed", func() bool { return b.th.task(t, r.ID).CompletedAt != nil })
	kinds := b.kinds(t, r.ID)
	want := []string{"queued", "start", "dispatch", "start", "complete", "complete"}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	if b.ex.count(r.ID) != 1 {
		t.Fatalf("executions %d", b.ex.count(r.ID))
	}
}

func TestAgentRunCancel(t *testing.T) {
	t.Parallel()
	b := setupRuns(t)
	r, err := b.svc.Trigger(context.Background(), b.job.ID, runs.SourceManual)
	if err != nil {
		t.Fatal(err)
	}
	<-b.ex.started
	reason := "test"
	if _, err := b.svc.Cancel(context.Background(), r.ID, nil, &reason); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "run canceled", func() bool { return b.run(t, r.ID).Status == storage.RunCanceled })
	waitFor(t, "task completed", func() bool { return b.th.task(t, r.ID).CompletedAt != nil })
}

// TestQueuedRunStartsWhenAgentConnects: a run queued while its agent is away waits quietly and
// starts when the agent connects.
func TestQueuedRunStartsWhenAgentConnects(t *testing.T) {
	t.Parallel()
	b := setupRuns(t)
	b.ra.stop()
	<-b.ra.done
	b.ra.done <- nil
	waitFor(t, "agent gone", func() bool { return !b.th.hub.Connected(b.ra.a.ID()) })
	r, err := b.svc.Trigger(context.Background(), b.job.ID, runs.SourceManual)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.run(t, r.ID); got.Status != storage.RunQueued {
		t.Fatalf("run for an offline agent: %s", got.Status)
	}
	ex := newExecutor()
	close(ex.release)
	startAgent(t, b.th.url, "", b.ra.dir, ex, time.Second)
	waitFor(t, "run succeeded", func() bool { return b.run(t, r.ID).Status == storage.RunSuccess })
	if ex.count(r.ID) != 1 {
		t.Fatalf("executions %d", ex.count(r.ID))
	}
}

// TestAgentRunsRealBackup: an agent run goes through the same backup pipeline as a Hub run and
// leaves a complete snapshot in a directory on the agent's machine.
func TestAgentRunsRealBackup(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"archive_v1", "raw_tree_v1"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			agentRunsRealBackup(t, format)
		})
	}
}

func agentRunsRealBackup(t *testing.T, format string) {
	db := storagetest.Open(t)
	bridge := agentsock.NewRunBridge()
	th := newTestHub(t, hubOpts{db: db, bridge: bridge})
	svc := runs.New(runs.Config{DB: db, Clock: clock.Real{}, Log: zerolog.New(zerolog.NewTestWriter(t)), Agents: bridge,
		OnFinished: []runs.FinishHook{backupexec.IndexSnapshot}})
	bridge.Attach(th.hub, svc)
	runLoop(t, svc.Run)
	dataDir := t.TempDir()
	log := zerolog.New(zerolog.NewTestWriter(t))
	ra := startAgent(t, th.url, newEnrollToken(t, db, nil), dataDir, client.NewBackupExecutor(dataDir, nil, log), time.Second)
	waitFor(t, "agent connected", func() bool { return th.hub.Connected(ra.a.ID()) })

	src, dst := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("hello from the agent"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := ra.a.ID()
	spec := fmt.Sprintf(`{"v":1,"type":"filesystem","pipeline":{"format":%q},"source":{"paths":[%q]},"target":{"type":"local_dir","base_dir":%q}}`, format, src, dst)
	job := storage.Job{ID: "job-real", Name: "real", AgentID: &id, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
		MissedRunPolicy: "run_once", SpecJSON: spec, CreatedAt: 1, UpdatedAt: 1}
	if err := db.Writer().InsertJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	r, err := svc.Trigger(context.Background(), job.ID, runs.SourceManual)
	if err != nil {
		t.Fatal(err)
	}
	var got storage.Run
	waitFor(t, "run ended", func() bool {
		got, _ = db.Reader().GetRun(context.Background(), r.ID)
		return got.EndedAt != nil
	})
	if got.Status != storage.RunSuccess {
		t.Fatalf("run %s: error %v summary %v", got.Status, deref(got.Error), deref(got.SummaryJSON))
	}
	if _, err := os.Stat(filepath.Join(dst, job.ID, r.ID, "complete.json")); err != nil {
		t.Fatalf("snapshot on the agent's disk: %v", err)
	}
	if format == "raw_tree_v1" {
		b, err := os.ReadFile(filepath.Join(dst, job.ID, r.ID, "data", strings.TrimPrefix(src, "/"), "a.txt"))
		if err != nil || string(b) != "hello from the agent" {
			t.Fatalf("the agent's raw tree holds %q, %v", b, err)
		}
	}
	if got.ProgressJSON == nil {
		t.Fatal("the agent's progress did not reach the run")
	}
	// The agent forwards its pipeline's stage events; the Hub adds none of its own.
	evs, err := db.Reader().ListRunEvents(context.Background(), r.ID, 0, 200)
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]int{}
	for _, e := range evs {
		if e.Kind == "scan" || e.Kind == "packaging" || e.Kind == "upload" {
			stages[e.Kind]++
		}
	}
	if stages["packaging"] != 1 || stages["upload"] != 1 || stages["scan"] > 1 {
		t.Fatalf("stage events of an agent run: %v, want each once", stages)
	}
	// The snapshot is indexed with the sizes the agent measured, where the agent wrote it.
	a, err := db.Reader().GetRunArtifact(context.Background(), job.ID, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a.NodeID != id || a.ArtifactFormat != format || a.TargetSnapshotJSON != *got.TargetSnapshotJSON || !strings.Contains(a.TargetSnapshotJSON, fmt.Sprintf(`"base_dir":%q`, dst)) {
		t.Fatalf("snapshot %+v, run target %s", a, *got.TargetSnapshotJSON)
	}
	if a.SourceFiles == nil || *a.SourceFiles != 1 || a.SourceBytes == nil || *a.SourceBytes != int64(len("hello from the agent")) ||
		a.SourceDirs == nil || *a.SourceDirs < 1 || a.TransferBytes == nil || *a.TransferBytes <= 0 {
		t.Fatalf("sizes of the agent's snapshot: files %v dirs %v bytes %v transfer %v",
			deref64(a.SourceFiles), deref64(a.SourceDirs), deref64(a.SourceBytes), deref64(a.TransferBytes))
	}
}

func deref64(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// A job whose stored spec is not even JSON fails its run as invalid_spec; it must not hold up the
// agent's other runs (the task used to fail to encode on every queue pass).
func TestUnreadableSpecFailsItsRunWithoutBlockingTheAgent(t *testing.T) {
	t.Parallel()
	b := setupRuns(t)
	ctx := context.Background()
	bad := b.job
	bad.ID, bad.Name = "job-bad", "bad spec"
	if err := b.th.db.Writer().InsertJob(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := b.th.db.Writer().Exec(ctx, `UPDATE jobs SET spec_json = 'not json' WHERE id = 'job-bad'`); err != nil {
		t.Fatal(err)
	}
	badRun, err := b.svc.Trigger(ctx, bad.ID, runs.SourceManual)
	if err != nil {
		t.Fatal(err)
	}
	goodRun, err := b.svc.Trigger(ctx, b.job.ID, runs.SourceManual)
	if err != nil {
		t.Fatal(err)
	}
	close(b.ex.release)
	waitFor(t, "bad run failed", func() bool { return b.run(t, badRun.ID).Status == storage.RunFailed })
	if r := b.run(t, badRun.ID); r.Error == nil || *r.Error != runs.CodeInvalidSpec {
		t.Fatalf("bad run error = %v, want %s", r.Error, runs.CodeInvalidSpec)
	}
	waitFor(t, "good run succeeded", func() bool { return b.run(t, goodRun.ID).Status == storage.RunSuccess })
}

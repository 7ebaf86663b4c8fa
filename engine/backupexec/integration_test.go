package backupexec_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/backupexec"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// TestRunQueueToRestore drives a backup through the real run queue (Trigger → executor →
// finish hook indexing the snapshot) and restores it with the operations service.
func TestRunQueueToRestore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	log := zerolog.New(zerolog.NewTestWriter(t))
	dataDir, base, src := t.TempDir(), filepath.Join(t.TempDir(), "bk"), filepath.Join(t.TempDir(), "src")
	testtool.BuildTree(t, src, 2<<20)
	op := opener.New(opener.Config{Logger: log})
	svc := runs.New(runs.Config{DB: db, Clock: clock.Real{}, Log: log,
		Executor:   backupexec.New(backupexec.Config{DataDir: dataDir, Opener: op, Logger: log}),
		OnFinished: []runs.FinishHook{backupexec.IndexSnapshot}})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	spec, _ := json.Marshal(map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{src}},
		"target": map[string]any{"type": "local_dir", "base_dir": base, "part_size_bytes": 1 << 20}})
	job := storage.Job{ID: "4b4f5a6e-0000-4000-8000-000000000001", Name: "files", ScheduleTimezone: "UTC", OverlapPolicy: "queue",
		MissedRunPolicy: "skip", SpecJSON: string(spec)}
	if err := db.Writer().InsertJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	run, err := svc.Trigger(ctx, job.ID, runs.SourceManual)
	if err != nil {
		t.Fatal(err)
	}
	run = waitRun(t, db, run.ID)
	if run.Status != storage.RunSuccess {
		t.Fatalf("run = %+v error %v", run, run.Error)
	}
	var rt targets.RunTarget
	if err := json.Unmarshal([]byte(*run.TargetSnapshotJSON), &rt); err != nil || rt.Target.BaseDir != base || rt.NodeID != "hub" {
		t.Fatalf("run target snapshot = %v (%v)", *run.TargetSnapshotJSON, err)
	}
	a, err := db.Reader().GetRunArtifact(ctx, job.ID, run.ID)
	if err != nil {
		t.Fatalf("snapshot not indexed: %v", err)
	}
	if a.Status != storage.SnapshotPresent || a.EndedAt != *run.EndedAt || a.SourceFiles == nil || *a.SourceFiles < 120 {
		t.Fatalf("snapshot = %+v", a)
	}
	evs, _ := db.Reader().ListRunEvents(ctx, run.ID, 0, 100)
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if kinds[0] != "queued" || kinds[1] != "start" || kinds[len(kinds)-1] != "complete" {
		t.Fatalf("events = %v", kinds)
	}

	ops := operations.New(operations.Config{DB: db, Clock: clock.Real{}, Logger: log, DataDir: dataDir, Opener: op})
	dest := t.TempDir()
	o, err := ops.StartRestore(ctx, run.ID, operations.RestoreRequest{Destination: operations.Destination{Directory: dest}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); o.Status == storage.OperationRunning && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		o, _ = db.Reader().GetOperation(ctx, o.ID)
	}
	if o.Status != storage.OperationSuccess {
		t.Fatalf("restore = %+v", o)
	}
	testtool.CompareTrees(t, src, testtool.ArchivePath(dest, src), false)
}

func waitRun(t *testing.T, db *storage.DB, id string) storage.Run {
	t.Helper()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}
	for time.Now().Before(deadline) {
		r, err := db.Reader().GetRun(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != storage.RunQueued && r.Status != storage.RunRunning {
			return r
		}
		time.Sleep(10 * time.Millisecond) // polling a database row, not synchronising on time
	}
	t.Fatalf("run %s did not end", id)
	return storage.Run{}
}

package backupexec_test

import (
	"context"
	"encoding/json"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/agekeys"
	"github.com/bastion-backup/bastion/engine/backupexec"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// TestRunQueueToRestore drives backups through the real run queue (Trigger → executor →
// finish hook indexing the snapshot) to a local directory and to a real WebDAV server (rclone),
// with and without age encryption, and restores each with the operations service.
func TestRunQueueToRestore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		webdav, enc, raw bool
	}{{"LocalDir", false, false, false}, {"LocalDirAge", false, true, false}, {"WebDAV", true, false, false}, {"WebDAVAge", true, true, false},
		{"LocalDirRawTree", false, false, true}, {"WebDAVRawTree", true, false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runQueueToRestore(t, tc.webdav, tc.enc, tc.raw)
		})
	}
}

func runQueueToRestore(t *testing.T, useWebDAV, encrypt, raw bool) {
	ctx := context.Background()
	db := storagetest.Open(t)
	log := zerolog.New(zerolog.NewTestWriter(t))
	dataDir, base, src := t.TempDir(), filepath.Join(t.TempDir(), "bk"), filepath.Join(t.TempDir(), "src")
	testtool.BuildTree(t, src, 2<<20)
	if raw {
		testtool.WholeSecondMtimes(t, src)
	}
	keyring, err := secrets.NewKeyring(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	store := secrets.NewStore(db, keyring, clock.Real{})
	keys := agekeys.New(store)
	op := opener.New(opener.Config{Secrets: store, Logger: log})
	svc := runs.New(runs.Config{DB: db, Clock: clock.Real{}, Log: log,
		Executor:   backupexec.New(backupexec.Config{DataDir: dataDir, Opener: op, Keys: keys, Logger: log}),
		OnFinished: []runs.FinishHook{backupexec.IndexSnapshot}})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	target := map[string]any{"type": "local_dir", "base_dir": base, "part_size_bytes": 1 << 20}
	if useWebDAV {
		if err := os.MkdirAll(base, 0o700); err != nil {
			t.Fatal(err)
		}
		url, user, pass := testtool.StartRcloneWebDAV(t, base)
		cred, _ := json.Marshal(secrets.WebDAV{Username: user, Password: pass})
		origin, err := secrets.NormalizeOrigin(url)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.PutWithOrigins(ctx, "hub", secrets.KindWebDAV, "nas", cred, secrets.OriginUpdate{Origins: []string{origin}}); err != nil {
			t.Fatal(err)
		}
		target = map[string]any{"type": "webdav", "base_url": url, "secret_name": "nas", "part_size_bytes": 1 << 20}
	}
	doc := map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{src}}, "target": target}
	if encrypt {
		doc["pipeline"] = map[string]any{"encryption": map[string]any{"type": "age_x25519", "key_name": "default"}}
	}
	if raw {
		doc["pipeline"] = map[string]any{"format": "raw_tree_v1"}
	}
	spec, _ := json.Marshal(doc)
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
	if err := json.Unmarshal([]byte(*run.TargetSnapshotJSON), &rt); err != nil || rt.NodeID != "hub" ||
		(useWebDAV && rt.Target.SecretName != "nas") || (!useWebDAV && string(rt.Target.JSON()) != string(localdir.Redact(base).JSON())) {
		t.Fatalf("run target snapshot = %v (%v)", *run.TargetSnapshotJSON, err)
	}
	// Whatever the target, its files are under base; the payload is encrypted when asked.
	manifest, err := os.ReadFile(filepath.Join(base, job.ID, run.ID, targets.ManifestName))
	if err != nil || strings.Contains(string(manifest), `"encryption": "age"`) != encrypt {
		t.Fatalf("manifest (encrypt=%v): %s %v", encrypt, manifest, err)
	}
	if useWebDAV && (strings.Contains(*run.TargetSnapshotJSON, "password") || strings.Contains(a0(db, job.ID, run.ID), "password")) {
		t.Fatal("a credential was stored with the run or its snapshot")
	}
	a, err := db.Reader().GetRunArtifact(ctx, job.ID, run.ID)
	if err != nil {
		t.Fatalf("snapshot not indexed: %v", err)
	}
	wantFormat := "archive_v1"
	if raw {
		wantFormat = "raw_tree_v1"
	}
	if a.Status != storage.SnapshotPresent || a.EndedAt != *run.EndedAt || a.SourceFiles == nil || *a.SourceFiles < 120 || a.ArtifactFormat != wantFormat {
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

	ops := operations.New(operations.Config{DB: db, Clock: clock.Real{}, Logger: log, DataDir: dataDir, Opener: op, Keys: keys})
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

func a0(db *storage.DB, jobID, runID string) string {
	a, _ := db.Reader().GetRunArtifact(context.Background(), jobID, runID)
	return a.TargetSnapshotJSON
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

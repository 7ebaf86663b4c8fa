package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/snapshots"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// backupHub is an API under test with the snapshot and operation services and their loops.
type backupHub struct {
	*apitest.Hub
	snaps *snapshots.Service
	ops   *operations.Service
	c     *apitest.Client
	// dataDir is the Hub data directory of the operations service (operations/, cache/).
	dataDir string
}

func startBackupHub(t *testing.T, opts ...apitest.Option) *backupHub {
	t.Helper()
	bh := &backupHub{dataDir: t.TempDir()}
	opts = append(opts, apitest.WithConfig(func(cfg *httpapi.Config) {
		op := opener.New(opener.Config{Logger: cfg.Logger})
		bh.snaps = snapshots.New(snapshots.Config{DB: cfg.DB, Clock: cfg.Clock, Opener: op, Logger: cfg.Logger, IncompleteCleanupDays: 7})
		bh.ops = operations.New(operations.Config{DB: cfg.DB, Clock: cfg.Clock, Logger: cfg.Logger, DataDir: bh.dataDir, Opener: op})
		cfg.Snapshots, cfg.Operations = bh.snaps, bh.ops
	}))
	bh.Hub = apitest.Start(t, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { bh.snaps.RunDeletes(ctx); done <- struct{}{} }()
	go func() { bh.ops.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	bh.c = bh.Login(t)
	return bh
}

// uuidN is a valid UUID-shaped id made from n.
func uuidN(prefix, n int) string { return fmt.Sprintf("%08d-0000-4000-8000-%012d", prefix, n) }

func (bh *backupHub) insertJob(t *testing.T, id, specJSON string) {
	t.Helper()
	now := bh.Clock.Now().Unix()
	if err := bh.DB.Writer().InsertJob(context.Background(), storage.Job{ID: id, Name: "job " + id[:8], ScheduleTimezone: "UTC",
		OverlapPolicy: "queue", MissedRunPolicy: "skip", SpecJSON: specJSON, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
}

// seedSnapshot indexes a successful run's snapshot on a local target and, with files, writes a
// minimal Bastion run directory there (so that deleting it works).
func (bh *backupHub) seedSnapshot(t *testing.T, jobID, runID, baseDir string, endedAt int64, files bool) {
	t.Helper()
	ctx := context.Background()
	snap, _ := json.Marshal(targets.RunTarget{NodeID: "hub", Target: localdir.Redact(baseDir)})
	ts := string(snap)
	err := bh.DB.Write(ctx, func(q storage.Q) error {
		if err := q.InsertRun(ctx, storage.Run{ID: runID, JobID: jobID, Status: storage.RunSuccess, StartedAt: endedAt - 10,
			EndedAt: &endedAt, TargetSnapshotJSON: &ts}); err != nil {
			return err
		}
		sz := int64(1000 + endedAt%7)
		return q.UpsertRunArtifact(ctx, storage.RunArtifact{RunID: runID, JobID: jobID, NodeID: "hub", TargetType: "local_dir",
			TargetSnapshotJSON: ts, ArtifactFormat: "archive_v1", Status: storage.SnapshotPresent, StartedAt: endedAt - 10,
			EndedAt: endedAt, SourceBytes: &sz, TransferBytes: &sz, CreatedAt: endedAt, UpdatedAt: endedAt})
	})
	if err != nil {
		t.Fatal(err)
	}
	if files {
		dir := filepath.Join(baseDir, jobID, runID)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"payload.part000001", targets.ManifestName, targets.EntriesName, targets.CompleteName} {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("{}"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func (bh *backupHub) snapshotStatus(t *testing.T, jobID, runID string) string {
	t.Helper()
	a, err := bh.DB.Reader().GetRunArtifact(context.Background(), jobID, runID)
	if err != nil {
		t.Fatal(err)
	}
	return a.Status
}

// eventually polls cond until it holds or the test's deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling observable state, not synchronising on time
	}
}

// waitOperation polls GET /api/operations/{id} until the operation has ended.
func (bh *backupHub) waitOperation(t *testing.T, id string) map[string]any {
	t.Helper()
	var op map[string]any
	eventually(t, "operation "+id, func() bool {
		st, body := bh.c.Get(t, "/api/operations/"+id)
		if st != http.StatusOK {
			t.Fatalf("get operation: %d %v", st, body)
		}
		op = body
		return body["status"] != "running"
	})
	return op
}

func errCode(m map[string]any) string {
	s, _ := m["error"].(string)
	return s
}

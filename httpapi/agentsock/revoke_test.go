package agentsock_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// TestRevokeEndsWhatTheAgentOwes: revoking an agent fails, in its own transaction, what it can
// never run or report any more: its jobs' queued runs, its running backup and its restore, each
// with agent_revoked and a failed event, notified like any failed run; its tasks are closed, the
// agent stops, and its jobs can no longer be run.
func TestRevokeEndsWhatTheAgentOwes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	log := zerolog.New(zerolog.NewTestWriter(t))
	store := newSecretStore(t, db)
	if err := store.Put(ctx, secrets.HubNode, secrets.KindWebhook, "hook", []byte(`{"url":"https://hooks.example/in"}`)); err != nil {
		t.Fatal(err)
	}
	notifier, err := notify.New(notify.Options{DB: db, Secrets: store, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	bridge := agentsock.NewRunBridge()
	h := agentsock.New(agentsock.Config{DB: db, Logger: log, Sink: bridge, OnConnect: bridge.AgentConnected, Notifier: notifier})
	th := serveTestHub(t, h, db)
	svc := runs.New(runs.Config{DB: db, Log: log, Agents: bridge})
	bridge.Attach(h, svc)
	runLoop(t, svc.Run)

	ex := newExecutor()
	agentDir := t.TempDir()
	// The revoked agent's logs go to a buffer: its backup goroutine outlives its Run (as in a real
	// agent, whose process exits) until the test releases it.
	agentLogs := &syncWriter{w: &bytes.Buffer{}}
	agentCtx, stopAgent := context.WithCancel(ctx)
	a, err := client.New(agentCtx, client.Options{HubURL: th.url, EnrollToken: newEnrollToken(t, db, nil), DataDir: agentDir,
		Heartbeat: time.Second, Executor: ex, Logger: zerolog.New(agentLogs),
		Backoff: &client.Backoff{Base: 10 * time.Millisecond, Cap: 100 * time.Millisecond}})
	if err != nil {
		stopAgent()
		t.Fatal(err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(agentCtx) }()
	t.Cleanup(func() {
		stopAgent()
		<-agentDone
	})
	agentID := a.ID()
	waitFor(t, "agent connected", func() bool { return h.Connected(agentID) })
	job := storage.Job{ID: "j1", Name: "on agent", AgentID: &agentID, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
		MissedRunPolicy: "run_once", SpecJSON: `{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"local_dir","base_dir":"/bk"}}`,
		CreatedAt: 1, UpdatedAt: 1}
	if err := db.Writer().InsertJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	running, err := svc.Trigger(ctx, job.ID, runs.SourceManual)
	if err != nil {
		t.Fatal(err)
	}
	<-ex.started
	queued, err := svc.Trigger(ctx, job.ID, runs.SourceManual) // waits behind the running one
	if err != nil {
		t.Fatal(err)
	}
	subject := "run"
	if err := db.Writer().InsertOperation(ctx, storage.Operation{ID: "op-1", Kind: storage.OperationRestore, Status: storage.OperationRunning,
		NodeID: agentID, StartedAt: 1, SubjectKind: &subject, SubjectID: &running.ID, CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	if err := db.Writer().InsertAgentTask(ctx, storage.AgentTask{ID: "op-1", AgentID: agentID, RunID: running.ID,
		Kind: storage.AgentTaskRestore, PayloadJSON: "{}", CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}

	if err := h.Revoke(ctx, agentID); err != nil {
		t.Fatal(err)
	}

	for _, id := range []string{running.ID, queued.ID} {
		r, err := db.Reader().GetRun(ctx, id)
		if err != nil || r.Status != storage.RunFailed || r.Error == nil || *r.Error != agentsock.CodeAgentRevoked || r.EndedAt == nil {
			t.Fatalf("run %s after the revocation: %+v %v", id, r, err)
		}
		evs, _ := db.Reader().ListRunEvents(ctx, id, 0, 100)
		last := evs[len(evs)-1]
		if last.Kind != "failed" || last.FieldsJSON == nil || !strings.Contains(*last.FieldsJSON, `"error":"agent_revoked"`) {
			t.Fatalf("last event of run %s: %+v", id, last)
		}
		var n int
		if err := db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM notifications WHERE run_id = ?`, id).Scan(&n); err != nil || n != 1 {
			t.Fatalf("notifications of run %s: %d %v", id, n, err)
		}
	}
	for _, id := range []string{running.ID, "op-1"} {
		if tk := th.task(t, id); tk.CompletedAt == nil || tk.ResultJSON == nil || !strings.Contains(*tk.ResultJSON, agentsock.CodeAgentRevoked) {
			t.Fatalf("task %s after the revocation: %+v", id, tk)
		}
	}
	op, err := db.Reader().GetOperation(ctx, "op-1")
	if err != nil || op.Status != storage.OperationFailed || op.Error == nil || !strings.HasPrefix(*op.Error, agentsock.CodeAgentRevoked) {
		t.Fatalf("restore after the revocation: %+v %v", op, err)
	}
	if evs, _ := db.Reader().ListOperationEvents(ctx, "op-1", 0, 10); len(evs) != 1 || evs[0].Kind != "failed" {
		t.Fatalf("restore events: %+v", evs)
	}
	select {
	case err := <-agentDone:
		agentDone <- err
		if !errors.Is(err, client.ErrRevoked) {
			t.Fatalf("agent ended with %v, want ErrRevoked", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the revoked agent kept running")
	}
	if _, err := svc.Trigger(ctx, job.ID, runs.SourceManual); !errors.Is(err, storage.ErrAgentRevoked) {
		t.Fatalf("run now of a revoked agent's job: %v", err)
	}
	// Let the backup end and wait until the agent has recorded it, before its directory goes.
	close(ex.release)
	waitFor(t, "the backup recorded on the agent", func() bool {
		b, _ := os.ReadFile(filepath.Join(agentDir, "agent", "tasks", running.ID+".json"))
		return bytes.Contains(b, []byte(`"state":"done"`))
	})
}

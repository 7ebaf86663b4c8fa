package operations_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/storage"
)

// agentRestore stores a restore running on an agent, with its agent task open or completed.
func (b *bundle) agentRestore(t *testing.T, n int, runID string, taskOpen bool) storage.Operation {
	t.Helper()
	ctx := context.Background()
	agentID := uuid(900 + n)
	subject, kind := runID, "run"
	op := storage.Operation{ID: uuid(800 + n), Kind: "restore", Status: "running", NodeID: agentID, StartedAt: 1,
		SubjectKind: &kind, SubjectID: &subject, CreatedAt: 1, UpdatedAt: 1}
	err := b.db.Write(ctx, func(q storage.Q) error {
		if err := q.InsertAgent(ctx, storage.Agent{ID: agentID, KeyHash: []byte(agentID), CreatedAt: 1, UpdatedAt: 1}); err != nil {
			return err
		}
		if err := q.InsertOperation(ctx, op); err != nil {
			return err
		}
		task := storage.AgentTask{ID: op.ID, AgentID: agentID, RunID: runID, Kind: storage.AgentTaskRestore, PayloadJSON: "{}", CreatedAt: 1, UpdatedAt: 1}
		if !taskOpen {
			done := int64(2)
			task.CompletedAt, task.Status = &done, storage.AgentTaskCompleted
		}
		return q.InsertAgentTask(ctx, task)
	})
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// TestRecoverSparesAgentRestores: after a Hub restart, a restore whose agent still owes the
// result stays running (the agent reports it); one whose task is closed cannot end any more.
func TestRecoverSparesAgentRestores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	runID := b.backup(t, 1)
	owed := b.agentRestore(t, 1, runID, true)
	orphan := b.agentRestore(t, 2, runID, false)
	n, err := b.svc.Recover(ctx)
	if err != nil || n != 1 {
		t.Fatalf("recover: %d %v", n, err)
	}
	if got, _ := b.db.Reader().GetOperation(ctx, owed.ID); got.Status != storage.OperationRunning {
		t.Fatalf("restore still owed by its agent = %s", got.Status)
	}
	if got, _ := b.db.Reader().GetOperation(ctx, orphan.ID); got.Status != storage.OperationFailed ||
		!strings.HasPrefix(deref(got.Error), operations.CodeHubRestarted) {
		t.Fatalf("orphaned restore = %s %s", got.Status, deref(got.Error))
	}
}

// TestFinishRemote: the first outcome an agent reports wins, a repeat changes nothing, and a
// requested cancel turns a failure into canceled.
func TestFinishRemote(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	runID := b.backup(t, 1)
	op := b.agentRestore(t, 1, runID, true)
	if err := b.svc.RemoteEvent(ctx, op.ID, "info", "manifest", "manifest read", json.RawMessage(`{"parts":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.svc.RemoteProgress(ctx, op.ID, []byte(`{"v":1,"kind":"restore","stage":"restore"}`)); err != nil {
		t.Fatal(err)
	}
	applied, err := b.svc.FinishRemote(ctx, op.ID, operations.RemoteOutcome{Status: storage.OperationSuccess, Summary: json.RawMessage(`{"written":3}`)})
	if err != nil || !applied {
		t.Fatalf("finish: %v %v", applied, err)
	}
	applied, err = b.svc.FinishRemote(ctx, op.ID, operations.RemoteOutcome{Status: storage.OperationFailed, Code: "x", Message: "late"})
	if err != nil || applied {
		t.Fatalf("second finish applied=%v err=%v", applied, err)
	}
	got, _ := b.db.Reader().GetOperation(ctx, op.ID)
	if got.Status != storage.OperationSuccess || deref(got.SummaryJSON) != `{"written":3}` || got.ProgressJSON == nil {
		t.Fatalf("operation = %+v", got)
	}
	evs, _ := b.db.Reader().ListOperationEvents(ctx, op.ID, 0, 10)
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if strings.Join(kinds, ",") != "manifest,complete" {
		t.Fatalf("events %v", kinds)
	}

	canceled := b.agentRestore(t, 2, runID, true)
	if _, err := b.svc.Cancel(ctx, canceled.ID, 0, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.FinishRemote(ctx, canceled.ID, operations.RemoteOutcome{Status: storage.OperationFailed, Code: "restore_io", Message: "stopped"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.db.Reader().GetOperation(ctx, canceled.ID); got.Status != storage.OperationCanceled {
		t.Fatalf("failure after a cancel = %s", got.Status)
	}
}

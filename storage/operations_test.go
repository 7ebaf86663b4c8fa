package storage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

func newOperation(id string) storage.Operation {
	kind, subject := "run", "run-1"
	return storage.Operation{ID: id, Kind: storage.OperationRestore, Status: storage.OperationRunning, NodeID: "hub",
		StartedAt: 100, SubjectKind: &kind, SubjectID: &subject, CreatedAt: 100, UpdatedAt: 100}
}

func TestOperations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("FinishOnceAndIgnoreLateWrites", func(t *testing.T) {
		t.Parallel()
		db := storagetest.Open(t)
		w := db.Writer()
		if err := w.InsertOperation(ctx, newOperation("op-1")); err != nil {
			t.Fatal(err)
		}
		if err := w.SetOperationProgress(ctx, "op-1", `{"stage":"restore"}`, 101); err != nil {
			t.Fatal(err)
		}
		msg := "part_invalid: part payload.part000002: hash_mismatch"
		o, ok, err := w.FinishOperation(ctx, storage.OperationFinish{ID: "op-1", Status: storage.OperationFailed, EndedAt: 102, Error: &msg})
		if err != nil || !ok {
			t.Fatalf("finish: ok=%v err=%v", ok, err)
		}
		if o.Status != storage.OperationFailed || *o.Error != msg || *o.ProgressJSON != `{"stage":"restore"}` || *o.EndedAt != 102 {
			t.Fatalf("finished operation = %+v", o)
		}
		// A second result and late progress change nothing.
		if _, ok, err := w.FinishOperation(ctx, storage.OperationFinish{ID: "op-1", Status: storage.OperationSuccess, EndedAt: 103}); err != nil || ok {
			t.Fatalf("second finish: ok=%v err=%v", ok, err)
		}
		if err := w.SetOperationProgress(ctx, "op-1", `{"stage":"late"}`, 104); err != nil {
			t.Fatal(err)
		}
		got, err := db.Reader().GetOperation(ctx, "op-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != storage.OperationFailed || *got.ProgressJSON != `{"stage":"restore"}` {
			t.Fatalf("after late writes: %+v", got)
		}
	})

	t.Run("CancelWinsOverFailure", func(t *testing.T) {
		t.Parallel()
		db := storagetest.Open(t)
		w := db.Writer()
		if err := w.InsertOperation(ctx, newOperation("op-2")); err != nil {
			t.Fatal(err)
		}
		uid, reason := int64(1), "wrong snapshot"
		o, err := w.RequestOperationCancel(ctx, "op-2", &uid, &reason, 110)
		if err != nil || o.CancelRequestedAt == nil || *o.CancelRequestedAt != 110 {
			t.Fatalf("cancel: %+v %v", o, err)
		}
		other := "later"
		if o, err = w.RequestOperationCancel(ctx, "op-2", &uid, &other, 120); err != nil || *o.CancelRequestedAt != 110 || *o.CancelReason != reason {
			t.Fatalf("repeated cancel changed the first request: %+v %v", o, err)
		}
		e := "canceled"
		o, ok, err := w.FinishOperation(ctx, storage.OperationFinish{ID: "op-2", Status: storage.OperationFailed, EndedAt: 121, Error: &e})
		if err != nil || !ok || o.Status != storage.OperationCanceled {
			t.Fatalf("finish after cancel: %+v ok=%v err=%v", o, ok, err)
		}
	})

	t.Run("EventsAndListing", func(t *testing.T) {
		t.Parallel()
		db := storagetest.Open(t)
		err := db.Write(ctx, func(q storage.Q) error {
			for _, id := range []string{"op-a", "op-b"} {
				op := newOperation(id)
				if id == "op-b" {
					op.StartedAt = 200
				}
				if err := q.InsertOperation(ctx, op); err != nil {
					return err
				}
			}
			for _, kind := range []string{"manifest", "restore", "complete"} {
				if err := q.AppendOperationEvent(ctx, "op-a", storage.OperationEvent{TS: 1, Level: "info", Kind: kind, Message: kind}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := db.Reader().ListOperationEvents(ctx, "op-a", 1, 10)
		if err != nil || len(ev) != 2 || ev[0].Seq != 2 || ev[0].Kind != "restore" || ev[1].Kind != "complete" {
			t.Fatalf("events after 1: %+v %v", ev, err)
		}
		ops, err := db.Reader().ListOperationsBySubject(ctx, "run", "run-1", 10)
		if err != nil || len(ops) != 2 || ops[0].ID != "op-b" {
			t.Fatalf("operations of run-1, newest first: %+v %v", ops, err)
		}
		running, err := db.Reader().ListOperationsByStatus(ctx, storage.OperationRunning, 10)
		if err != nil || len(running) != 2 || running[0].ID != "op-a" {
			t.Fatalf("running operations, oldest first: %+v %v", running, err)
		}
		if _, err := db.Reader().GetOperation(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("missing operation: %v", err)
		}
	})
}

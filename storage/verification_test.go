package storage_test

import (
	"context"
	"testing"

	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// The drill row's life: a trigger marks it pending, a start takes it, triggers and requests while
// it runs are absorbed, its end records the proof; a stale read of the schedule changes nothing.
func TestJobVerificationLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	w := db.Writer()
	if err := w.InsertJob(ctx, storage.Job{ID: "j", Name: "j", ScheduleTimezone: "UTC", OverlapPolicy: "queue",
		MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	cfg := `{"schedule":"0 3 * * 0","timezone":"UTC","mode":"verify"}`
	if err := w.SetJobVerificationConfig(ctx, "j", &cfg, 100); err != nil {
		t.Fatal(err)
	}
	if err := w.SetJobVerificationConfig(ctx, "j", &cfg, 200); err != nil { // unchanged: baseline stays
		t.Fatal(err)
	}
	rows, err := db.Reader().ListScheduledVerifications(ctx)
	if err != nil || len(rows) != 1 || rows[0].BaselineAt != 100 {
		t.Fatalf("scheduled %+v %v", rows, err)
	}
	if ok, err := w.MarkVerificationDue(ctx, "j", 99, nil, 300, true, "schedule", 300); err != nil || ok {
		t.Fatalf("a stale baseline marked the drill due: %v %v", ok, err)
	}
	if ok, err := w.MarkVerificationDue(ctx, "j", 100, nil, 300, true, "schedule", 300); err != nil || !ok {
		t.Fatalf("mark due: %v %v", ok, err)
	}
	pend, err := db.Reader().ListPendingVerifications(ctx, 10)
	if err != nil || len(pend) != 1 || pend[0].Job.ID != "j" || *pend[0].PendingSource != "schedule" {
		t.Fatalf("pending %+v %v", pend, err)
	}
	if ok, err := w.StartVerification(ctx, "j", "op1"); err != nil || !ok {
		t.Fatalf("start: %v %v", ok, err)
	}
	if ok, _ := w.StartVerification(ctx, "j", "op2"); ok {
		t.Fatal("a second start took the same pending drill")
	}
	// While op1 runs, a request and a trigger are absorbed.
	if err := w.RequestVerification(ctx, "j", "manual", 400); err != nil {
		t.Fatal(err)
	}
	at := int64(300)
	if ok, err := w.MarkVerificationDue(ctx, "j", 100, &at, 500, true, "schedule", 500); err != nil || !ok {
		t.Fatalf("mark due while running: %v %v", ok, err)
	}
	if v, _ := db.Reader().GetJobVerification(ctx, "j"); v.PendingAt != nil || *v.RunningOpID != "op1" {
		t.Fatalf("drill row while running %+v", v)
	}
	if err := w.RecordVerification(ctx, "j", "op1", storage.OperationSuccess, 600); err != nil {
		t.Fatal(err)
	}
	v, _ := db.Reader().GetJobVerification(ctx, "j")
	if v.RunningOpID != nil || *v.LastVerifyStatus != "success" || *v.LastProvenAt != 600 || *v.LastVerifiedAt != 600 {
		t.Fatalf("after success %+v", v)
	}
	if err := w.RecordVerification(ctx, "j", "op3", storage.OperationFailed, 700); err != nil {
		t.Fatal(err)
	}
	v, _ = db.Reader().GetJobVerification(ctx, "j")
	if *v.LastVerifyStatus != "failed" || *v.LastProvenAt != 600 || *v.LastVerifyOpID != "op3" {
		t.Fatalf("a failure must keep the last proof %+v", v)
	}
	// Removing the drill schedule keeps the proof; the job leaves the scheduler's list.
	if err := w.SetJobVerificationConfig(ctx, "j", nil, 800); err != nil {
		t.Fatal(err)
	}
	if rows, _ := db.Reader().ListScheduledVerifications(ctx); len(rows) != 0 {
		t.Fatalf("unscheduled job still listed %+v", rows)
	}
	if v, _ := db.Reader().GetJobVerification(ctx, "j"); *v.LastProvenAt != 600 {
		t.Fatalf("proof lost %+v", v)
	}
}

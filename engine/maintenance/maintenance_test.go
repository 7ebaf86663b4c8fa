package maintenance

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

func TestLoopPrunesAtStartAndHourly(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	fc := clock.NewFake(start)
	insertToken := func(hash byte, expires int64) {
		if _, err := db.Writer().Exec(ctx, `INSERT INTO enrollment_tokens(token_hash, created_at, expires_at) VALUES (?, 0, ?)`,
			[]byte{hash}, expires); err != nil {
			t.Fatal(err)
		}
	}
	insertToken(1, start.Unix()-1)                   // already expired
	insertToken(2, start.Add(30*time.Minute).Unix()) // expires before the next pass
	insertToken(3, start.Add(48*time.Hour).Unix())   // stays
	passed := make(chan Stats)
	l := &Loop{DB: db, Clock: fc, Log: zerolog.Nop(), passed: passed}
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()

	if st := <-passed; st.EnrollmentTokens != 1 {
		t.Fatalf("first pass pruned %d tokens, want 1", st.EnrollmentTokens)
	}
	if err := fc.WaitArmCount(ctx, 2); err != nil { // the timer re-armed for the next hour
		t.Fatal(err)
	}
	fc.Advance(Interval)
	if st := <-passed; st.EnrollmentTokens != 1 {
		t.Fatalf("hourly pass pruned %d tokens, want 1", st.EnrollmentTokens)
	}
	var left int
	db.Reader().QueryRow(ctx, "SELECT COUNT(*) FROM enrollment_tokens").Scan(&left)
	if left != 1 {
		t.Fatalf("%d tokens left, want 1", left)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after shutdown", err)
	}
}

// Audit rows go once they are older than the retention, in batches (more than one batch here),
// measured with the injected clock: a row one second younger than the limit stays until the
// clock moves past it.
func TestLoopPrunesAuditLogPastRetention(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	fc := clock.NewFake(start)
	const days = 180
	limit := start.Add(-days * 24 * time.Hour).Unix()
	insert := func(at int64, n int) {
		if _, err := db.Writer().Exec(ctx, `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < ?)
			INSERT INTO audit_log(at, actor_kind, client_ip, action, request_id, status, outcome)
			SELECT ?, 'user', '127.0.0.1', 'PUT /api/jobs/{id}', 'r', 200, 'ok' FROM c`, n, at); err != nil {
			t.Fatal(err)
		}
	}
	insert(limit-1, auditBatch+7)           // past retention: pruned at start, over two batches
	insert(limit+30*60, 3)                  // ages past retention before the next hourly pass
	insert(start.Add(-time.Hour).Unix(), 2) // recent: stays
	passed := make(chan Stats)
	l := &Loop{DB: db, Clock: fc, Log: zerolog.Nop(), AuditRetentionDays: func() int { return days }, passed: passed}
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()

	if st := <-passed; st.AuditRows != auditBatch+7 {
		t.Fatalf("first pass pruned %d audit rows, want %d", st.AuditRows, auditBatch+7)
	}
	if err := fc.WaitArmCount(ctx, 2); err != nil {
		t.Fatal(err)
	}
	fc.Advance(Interval)
	if st := <-passed; st.AuditRows != 3 {
		t.Fatalf("hourly pass pruned %d audit rows, want 3", st.AuditRows)
	}
	var left int
	db.Reader().QueryRow(ctx, "SELECT COUNT(*) FROM audit_log").Scan(&left)
	if left != 2 {
		t.Fatalf("%d audit rows left, want 2", left)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after shutdown", err)
	}
}

// A retention changed in the runtime settings applies at the next pass: the func is asked each time.
func TestPruneOnceReadsAuditRetentionEachPass(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	start := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	fc := clock.NewFake(start)
	if _, err := db.Writer().Exec(ctx, `INSERT INTO audit_log(at, actor_kind, client_ip, action, request_id, status, outcome)
		VALUES (?, 'user', '127.0.0.1', 'PUT /api/jobs/{id}', 'r', 200, 'ok')`, start.Add(-10*24*time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	days := 180
	l := &Loop{DB: db, Clock: fc, Log: zerolog.Nop(), AuditRetentionDays: func() int { return days }}
	if st, err := l.PruneOnce(ctx); err != nil || st.AuditRows != 0 {
		t.Fatalf("with 180 days a 10-day-old entry stays: %+v %v", st, err)
	}
	days = 7
	if st, err := l.PruneOnce(ctx); err != nil || st.AuditRows != 1 {
		t.Fatalf("after lowering to 7 days the entry goes: %+v %v", st, err)
	}
}

package maintenance

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/storage"
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
	passed := make(chan storage.PruneStats)
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

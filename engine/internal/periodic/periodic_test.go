package periodic

import (
	"context"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
)

func TestRunPassesAfterFirstThenEveryIntervalUntilCanceled(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fc := clock.NewFake(start)
	ctx, cancel := context.WithCancel(t.Context())
	passes := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- Run(ctx, fc, time.Minute, time.Hour, func(context.Context) { passes <- struct{}{} })
	}()

	// armedFor waits for the loop's arm-th timer arming and checks its deadline.
	armedFor := func(arm uint64, want time.Time) {
		t.Helper()
		if err := fc.WaitArmCount(ctx, arm); err != nil {
			t.Fatal(err)
		}
		if at, ok := fc.NextDeadline(); !ok || !at.Equal(want) {
			t.Fatalf("timer armed for %s (%t), want %s", at, ok, want)
		}
	}
	armedFor(1, start.Add(time.Minute))
	fc.Advance(time.Minute)
	<-passes
	armedFor(2, start.Add(time.Minute+time.Hour)) // an interval after the pass
	fc.Advance(time.Hour)
	<-passes
	armedFor(3, start.Add(time.Minute+2*time.Hour))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after cancel", err)
	}
}

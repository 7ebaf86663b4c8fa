package clock

import (
	"context"
	"testing"
	"time"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestFakeTimerFiresOnlyWhenDue(t *testing.T) {
	t.Parallel()
	f := NewFake(epoch)
	tm := f.NewTimer(time.Minute)
	f.Advance(59 * time.Second)
	select {
	case <-tm.C():
		t.Fatal("fired early")
	default:
	}
	f.Advance(time.Second)
	select {
	case got := <-tm.C():
		if !got.Equal(epoch.Add(time.Minute)) {
			t.Fatalf("fired with %v", got)
		}
	default:
		t.Fatal("did not fire at its deadline")
	}
	if f.Fires() != 1 {
		t.Fatalf("Fires() = %d, want 1", f.Fires())
	}
}

func TestFakeResetDiscardsUnreadFire(t *testing.T) {
	t.Parallel()
	f := NewFake(epoch)
	tm := f.NewTimer(time.Second)
	f.Advance(time.Second) // fires into the buffer, nobody reads it
	if tm.Reset(time.Hour) {
		t.Fatal("Reset reported an active timer after it fired")
	}
	select {
	case <-tm.C():
		t.Fatal("stale value survived Reset")
	default:
	}
	if d, ok := f.NextDeadline(); !ok || !d.Equal(epoch.Add(time.Second+time.Hour)) {
		t.Fatalf("NextDeadline = %v %v", d, ok)
	}
}

func TestFakeStopAndZeroDuration(t *testing.T) {
	t.Parallel()
	f := NewFake(epoch)
	tm := f.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of an armed timer returned false")
	}
	f.Advance(time.Hour)
	select {
	case <-tm.C():
		t.Fatal("stopped timer fired")
	default:
	}
	tm.Reset(0)
	select {
	case <-tm.C():
	default:
		t.Fatal("Reset(0) did not fire at once")
	}
}

func TestFakeSetBackwardsDelaysFire(t *testing.T) {
	t.Parallel()
	f := NewFake(epoch)
	tm := f.NewTimer(time.Minute)
	f.Set(epoch.Add(-time.Hour))
	f.Advance(time.Hour)
	select {
	case <-tm.C():
		t.Fatal("fired before its absolute deadline")
	default:
	}
	f.Advance(time.Minute)
	select {
	case <-tm.C():
	default:
		t.Fatal("did not fire at its absolute deadline")
	}
}

func TestFakeWaitArmCount(t *testing.T) {
	t.Parallel()
	f := NewFake(epoch)
	start := f.ArmCount()
	done := make(chan error, 1)
	go func() { done <- f.WaitArmCount(context.Background(), start+1) }()
	f.NewTimer(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.WaitArmCount(ctx, start+100); err == nil {
		t.Fatal("WaitArmCount ignored a canceled context")
	}
}

package jobgate

import (
	"context"
	"testing"
)

func TestGate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	no := func(context.Context) (bool, error) { return false, nil }
	yes := func(context.Context) (bool, error) { return true, nil }
	g := New(1)
	woke := 0
	g.OnDrillEnd(func() { woke++ })

	t.Run("BackupRunningBlocksDrill", func(t *testing.T) {
		if _, busy, _ := g.TryDrill(ctx, "a", "t1", yes); busy != BusyBackup {
			t.Fatalf("busy = %q", busy)
		}
	})
	t.Run("ClaimInFlightBlocksDrill", func(t *testing.T) {
		done, ok := g.BackupStarting("a")
		if !ok {
			t.Fatal("backup refused with no drill")
		}
		if _, busy, _ := g.TryDrill(ctx, "a", "t1", no); busy != BusyBackup {
			t.Fatalf("busy = %q", busy)
		}
		done()
		done() // idempotent
	})
	t.Run("DrillBlocksBackupAndTarget", func(t *testing.T) {
		rel, busy, err := g.TryDrill(ctx, "a", "t1", no)
		if err != nil || busy != "" {
			t.Fatalf("TryDrill: %q %v", busy, err)
		}
		if _, ok := g.BackupStarting("a"); ok {
			t.Fatal("backup allowed while a drill runs")
		}
		if done, ok := g.BackupStarting("b"); !ok {
			t.Fatal("backup of another job refused")
		} else {
			done()
		}
		if _, busy, _ := g.TryDrill(ctx, "b", "t1", no); busy != BusyTarget {
			t.Fatalf("second drill on the same target: busy = %q", busy)
		}
		if r2, busy, _ := g.TryDrill(ctx, "c", "t2", no); busy != "" {
			t.Fatalf("drill on another target: busy = %q", busy)
		} else {
			r2()
		}
		rel()
		rel()
		if woke != 2 {
			t.Fatalf("OnDrillEnd ran %d times, want 2", woke)
		}
		if _, ok := g.BackupStarting("a"); !ok {
			t.Fatal("backup still refused after the drill ended")
		}
	})
}

package supervise

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestCleanShutdownIsNotAFailure(t *testing.T) {
	t.Parallel()
	parent, cancel := context.WithCancel(context.Background())
	g, _ := New(parent, zerolog.Nop())
	for _, name := range []string{"a", "b"} {
		g.Go(name, func(ctx context.Context) error { <-ctx.Done(); return nil })
	}
	cancel()
	if err := g.Wait(); err != nil {
		t.Fatalf("Wait after shutdown = %v", err)
	}
}

// A loop that shutdown interrupts in the middle of its work returns its context's error, wrapped;
// that is a clean shutdown too (stopping a Hub right after its start used to fail with
// "recover stuck incomplete cleanup tasks: context canceled").
func TestLoopInterruptedByShutdownIsNotAFailure(t *testing.T) {
	t.Parallel()
	parent, cancel := context.WithCancel(context.Background())
	g, _ := New(parent, zerolog.Nop())
	g.Go("busy", func(ctx context.Context) error {
		<-ctx.Done()
		return fmt.Errorf("recover stuck tasks: %w", ctx.Err())
	})
	cancel()
	if err := g.Wait(); err != nil {
		t.Fatalf("Wait after shutdown = %v", err)
	}
}

func TestFailingLoopStopsTheOthers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		loop func(ctx context.Context) error
		want string
	}{
		{"Error", func(context.Context) error { return errors.New("disk on fire") }, "disk on fire"},
		{"EarlyReturn", func(context.Context) error { return nil }, "stopped unexpectedly"},
		{"Panic", func(context.Context) error { panic("nil map") }, "panicked: nil map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, ctx := New(context.Background(), zerolog.Nop())
			stopped := make(chan struct{})
			g.Go("healthy", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil })
			g.Go("broken", tc.loop)
			<-stopped
			err := g.Wait()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "broken") {
				t.Fatalf("Wait = %v, want the broken loop's failure %q", err, tc.want)
			}
			if ctx.Err() == nil {
				t.Fatal("group context still live after a failure")
			}
		})
	}
}

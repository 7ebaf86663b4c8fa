package agentsock_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
)

// TestAgentTargets: the snapshot queues reach an agent's directories through its socket. Cleanup
// leaves a complete run alone and removes an incomplete one; delete removes a run and reports one
// already gone; an agent that is not connected is a network failure (retried later).
func TestAgentTargets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	th := newTestHub(t, hubOpts{})
	ra := startAgent(t, th.url, newEnrollToken(t, th.db, nil), t.TempDir(), newExecutor(), time.Second)
	waitFor(t, "agent connected", func() bool { return th.hub.Connected(ra.a.ID()) })
	base := t.TempDir()
	seed := func(job, run string, complete bool) string {
		t.Helper()
		dir := filepath.Join(base, job, run)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		names := []string{"payload.part000001", targets.ManifestName}
		if complete {
			names = append(names, targets.CompleteName)
		}
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	o := agentsock.Targets{Hub: th.hub, Logger: zerolog.Nop()}
	rt := targets.RunTarget{NodeID: ra.a.ID(), Target: localdir.Redact(base)}
	tgt, err := o.Open(ctx, rt)
	if err != nil {
		t.Fatal(err)
	}

	done, partial := seed("job", "run-complete", true), seed("job", "run-partial", false)
	if res, err := tgt.CleanupRun(ctx, targets.RunRef{JobID: "job", RunID: "run-complete"}); err != nil || res != targets.CleanupSkipComplete {
		t.Fatalf("cleanup of a complete run: %v %v", res, err)
	}
	if _, err := os.Stat(done); err != nil {
		t.Fatalf("a complete run was touched: %v", err)
	}
	if res, err := tgt.CleanupRun(ctx, targets.RunRef{JobID: "job", RunID: "run-partial"}); err != nil || res != targets.CleanupDeleted {
		t.Fatalf("cleanup of an incomplete run: %v %v", res, err)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Fatalf("incomplete run still there: %v", err)
	}
	if res, err := tgt.DeleteRun(ctx, targets.RunRef{JobID: "job", RunID: "run-complete"}); err != nil || res != targets.DeleteDeleted {
		t.Fatalf("delete: %v %v", res, err)
	}
	if res, err := tgt.DeleteRun(ctx, targets.RunRef{JobID: "job", RunID: "run-complete"}); err != nil || res != targets.DeleteNotFound {
		t.Fatalf("delete again: %v %v", res, err)
	}
	if _, err := tgt.Open(ctx, targets.RunRef{JobID: "job", RunID: "run-complete"}, targets.ManifestName); targets.KindOf(err) != targets.KindConfig {
		t.Fatalf("reading an agent's directory from the Hub: %v", err)
	}

	ra.stop()
	<-ra.done
	ra.done <- nil
	waitFor(t, "agent gone", func() bool { return !th.hub.Connected(ra.a.ID()) })
	if _, err := tgt.DeleteRun(ctx, targets.RunRef{JobID: "job", RunID: "run-x"}); targets.KindOf(err) != targets.KindNetwork ||
		!errors.Is(err, agentsock.ErrAgentOffline) {
		t.Fatalf("delete through an agent that left: %v", err)
	}
	if _, err := o.Open(ctx, rt); targets.KindOf(err) != targets.KindNetwork {
		t.Fatalf("open on an offline agent: %v", err)
	}
}

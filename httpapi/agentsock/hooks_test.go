package agentsock_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/engine/backupexec"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// A job's hooks travel to the agent in its task spec; the agent runs them only when started with
// --allow-hooks, and otherwise fails the run with hooks_not_allowed, over the real WebSocket.
func TestAgentRunsHooksOnlyWhenAllowed(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("Allow=%v", allow), func(t *testing.T) {
			t.Parallel()
			db := storagetest.Open(t)
			bridge := agentsock.NewRunBridge()
			th := newTestHub(t, hubOpts{db: db, bridge: bridge})
			svc := runs.New(runs.Config{DB: db, Clock: clock.Real{}, Log: zerolog.New(zerolog.NewTestWriter(t)), Agents: bridge,
				OnFinished: []runs.FinishHook{backupexec.IndexSnapshot}})
			bridge.Attach(th.hub, svc)
			runLoop(t, svc.Run)
			dataDir := t.TempDir()
			ex := client.NewBackupExecutor(dataDir, nil, zerolog.New(zerolog.NewTestWriter(t)))
			ex.AllowHooks = allow
			ra := startAgent(t, th.url, newEnrollToken(t, db, nil), dataDir, ex, time.Second)
			waitFor(t, "agent connected", func() bool { return th.hub.Connected(ra.a.ID()) })

			src, dst, out := t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "after")
			if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("data"), 0o600); err != nil {
				t.Fatal(err)
			}
			id := ra.a.ID()
			spec := fmt.Sprintf(`{"v":1,"type":"filesystem","source":{"paths":[%q]},"target":{"type":"local_dir","base_dir":%q},
				"hooks":{"before":{"command":["sh","-c","echo dumped on the agent"]},
				"after":{"command":["sh","-c","echo \"$BASTION_JOB_NAME $BASTION_RUN_STATUS\" > %s"],"when":"always"}}}`, src, dst, out)
			job := storage.Job{ID: "job-hooks", Name: "db dump", AgentID: &id, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
				MissedRunPolicy: "run_once", SpecJSON: spec, CreatedAt: 1, UpdatedAt: 1}
			if err := db.Writer().InsertJob(context.Background(), job); err != nil {
				t.Fatal(err)
			}
			r, err := svc.Trigger(context.Background(), job.ID, runs.SourceManual)
			if err != nil {
				t.Fatal(err)
			}
			var got storage.Run
			waitFor(t, "run ended", func() bool {
				got, _ = db.Reader().GetRun(context.Background(), r.ID)
				return got.EndedAt != nil
			})
			evs, err := db.Reader().ListRunEvents(context.Background(), r.ID, 0, 200)
			if err != nil {
				t.Fatal(err)
			}
			var output []string
			for _, e := range evs {
				if e.Kind == "hook_output" {
					output = append(output, e.Message)
				}
			}
			if !allow {
				if got.Status != storage.RunFailed || deref(got.Error) != backupexec.CodeHooksNotAllowed {
					t.Fatalf("run %s error %s, want failed %s", got.Status, deref(got.Error), backupexec.CodeHooksNotAllowed)
				}
				if !strings.Contains(deref(got.SummaryJSON)+fmt.Sprint(evs), "--allow-hooks") {
					t.Fatalf("the failure does not say how to allow hooks: summary %s events %+v", deref(got.SummaryJSON), evs)
				}
				if _, err := os.Stat(out); !os.IsNotExist(err) || len(output) != 0 {
					t.Fatal("a hook ran on an agent without --allow-hooks")
				}
				return
			}
			if got.Status != storage.RunSuccess {
				t.Fatalf("run %s: error %s", got.Status, deref(got.Error))
			}
			if strings.Join(output, "|") != "dumped on the agent" {
				t.Fatalf("hook output events on the Hub: %q", output)
			}
			b, err := os.ReadFile(out)
			if err != nil || strings.TrimSpace(string(b)) != "db dump success" {
				t.Fatalf("after hook wrote %q (%v)", b, err)
			}
		})
	}
}

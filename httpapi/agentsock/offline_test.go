package agentsock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// TestOfflineCronAndIngest: an agent that loses the Hub runs its scheduled job from the cached
// config and uploads the run when it is back.
func TestOfflineCronAndIngest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDBAt(t, filepath.Join(t.TempDir(), "bastion.db"))
	h := agentsock.New(agentsock.Config{DB: db, Snapshots: agentsock.StoreSnapshots{DB: db}})
	th := serveTestHub(t, h, db)
	px := newFaultProxy(t, th.srv.Listener.Addr().String())

	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC))
	dataDir := t.TempDir()
	managed, err := client.OpenManaged(dataDir, fake.Now)
	if err != nil {
		t.Fatal(err)
	}
	ex := client.ExecutorFunc(func(ctx context.Context, tk *protocol.Task, emit func(*protocol.RunEvent)) protocol.TaskResult {
		emit(&protocol.RunEvent{RunID: tk.Task.RunID, Level: "info", Kind: "start", Message: "offline start"})
		return protocol.TaskResult{Status: protocol.StatusSuccess, Summary: json.RawMessage(`{"files":3}`)}
	})
	ra := startAgentWith(t, client.Options{HubURL: px.url(), EnrollToken: newEnrollToken(t, db, nil), DataDir: dataDir,
		Heartbeat: time.Second, Managed: managed, Clock: fake, Executor: ex})
	id := ra.a.ID()
	sched := "* * * * *"
	job := storage.Job{ID: "cron-job", Name: "every minute", AgentID: &id, Schedule: &sched, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
		MissedRunPolicy: "run_once", SpecJSON: `{"v":1,"type":"filesystem","source":{"paths":["/x"]},"target":{"type":"local_dir","base_dir":"/y"}}`, CreatedAt: 1, UpdatedAt: 1}
	if err := db.Writer().InsertJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "agent connected", func() bool { return h.Connected(id) })
	if _, err := h.SyncConfig(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "config on the agent", func() bool { c := managed.Config(); return c != nil && len(c.Jobs) == 1 })

	// The Hub becomes unreachable.
	px.setUpstream("127.0.0.1:1")
	px.faultAll(faultDrop)
	waitFor(t, "hub lost", func() bool { return !h.Connected(id) })
	offline := filepath.Join(dataDir, "agent", "offline_runs")
	var runID string
	waitFor(t, "an offline run finished", func() bool {
		fake.Advance(time.Second) // the agent's own clock: its cron and its backoff
		es, _ := os.ReadDir(offline)
		for _, e := range es {
			b, _ := os.ReadFile(filepath.Join(offline, e.Name(), "run.json"))
			if bytes.Contains(b, []byte(`"status":"success"`)) {
				runID = e.Name()
				return true
			}
		}
		return false
	})

	// The Hub is back: the run is uploaded and the agent forgets it.
	px.setUpstream(th.srv.Listener.Addr().String())
	waitFor(t, "offline run ingested", func() bool {
		fake.Advance(time.Second)
		r, err := db.Reader().GetRun(ctx, runID)
		_, statErr := os.Stat(filepath.Join(offline, runID))
		return err == nil && r.Status == storage.RunSuccess && os.IsNotExist(statErr)
	})
	evs, err := db.Reader().ListRunEvents(ctx, runID, 0, 100)
	if err != nil || len(evs) != 1 || evs[0].Message != "offline start" {
		t.Fatalf("events %+v %v", evs, err)
	}
	// The agent says where the run wrote: the target of the spec it ran.
	if a, err := db.Reader().GetRunArtifact(ctx, job.ID, runID); err != nil || a.NodeID != id || !strings.Contains(a.TargetSnapshotJSON, `"base_dir":"/y"`) {
		t.Fatalf("snapshot of the offline run: %+v %v", a, err)
	}
}

func TestIngestRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	th := newTestHub(t, hubOpts{})
	key, other := insertAgentKey(t, th.db, "a1"), insertAgentKey(t, th.db, "a2")
	a1 := "a1"
	if err := th.db.Writer().InsertJob(ctx, storage.Job{ID: "j1", Name: "j", AgentID: &a1, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
		MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	post := func(key string, body any) (int, string) { return postIngest(t, th.url, key, body) }
	run := func(events int) map[string]any {
		evs := []map[string]any{}
		for i := 1; i <= events; i++ {
			evs = append(evs, map[string]any{"seq": i, "ts": 10, "level": "info", "kind": "k", "message": fmt.Sprint("m", i)})
		}
		return map[string]any{"run": map[string]any{"id": "r1", "job_id": "j1", "status": "success", "started_at": 10, "ended_at": 20, "events": evs}}
	}
	for i := 0; i < 2; i++ { // idempotent
		if code, e := post(key, run(3)); code != 204 {
			t.Fatalf("upload %d: %d %s", i, code, e)
		}
	}
	evs, _ := th.db.Reader().ListRunEvents(ctx, "r1", 0, 100)
	if len(evs) != 3 {
		t.Fatalf("events after two uploads: %d", len(evs))
	}
	if code, _ := post("", run(1)); code != 401 {
		t.Fatalf("no key: %d", code)
	}
	if code, e := post(other, run(1)); code != 403 || e != "not_assigned" {
		t.Fatalf("another agent's job: %d %s", code, e)
	}
	if code, e := post(key, run(2001)); code != 400 || e != "too_many_events" {
		t.Fatalf("2001 events: %d %s", code, e)
	}
	bad := run(1)
	bad["run"].(map[string]any)["ended_at"] = 5
	if code, _ := post(key, bad); code != 400 {
		t.Fatalf("ended before started: %d", code)
	}
	huge := run(1)
	huge["run"].(map[string]any)["summary"] = map[string]string{"x": strings.Repeat("y", 5<<20)}
	if code, _ := post(key, huge); code != 413 {
		t.Fatalf("5 MiB body: %d", code)
	}
}

// TestIngestNotifiesAndIndexes: an offline run uploaded by its agent is notified like a run that
// finished on the Hub (queued in the same transaction; a repeated upload queues nothing more),
// and its snapshot is indexed, on the agent's node, so it can be restored and deleted.
func TestIngestNotifiesAndIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	store := newSecretStore(t, db)
	if err := store.Put(ctx, secrets.HubNode, secrets.KindWebhook, "hook", []byte(`{"url":"https://hooks.example/in"}`)); err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t))
	notifier, err := notify.New(notify.Options{DB: db, Secrets: store, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	th := serveTestHub(t, agentsock.New(agentsock.Config{DB: db, Logger: log, Notifier: notifier}), db)
	key := insertAgentKey(t, db, "a1")
	a1 := "a1"
	if err := db.Writer().InsertJob(ctx, storage.Job{ID: "j1", Name: "j", AgentID: &a1, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
		MissedRunPolicy: "run_once", SpecJSON: `{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"local_dir","base_dir":"/bk"}}`,
		CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"run": map[string]any{"id": "r1", "job_id": "j1", "status": "success", "started_at": 10, "ended_at": 20,
		"target": map[string]string{"type": "local_dir", "base_dir": "/bk"},
		"events": []map[string]any{{"seq": 1, "ts": 10, "level": "info", "kind": "complete", "message": "done"}}}}
	count := func() int {
		t.Helper()
		rows, err := db.Reader().Query(ctx, `SELECT COUNT(*) FROM notifications WHERE run_id = 'r1'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	for i := 0; i < 2; i++ {
		if code, e := postIngest(t, th.url, key, body); code != 204 {
			t.Fatalf("upload %d: %d %s", i, code, e)
		}
		if n := count(); n != 1 {
			t.Fatalf("after upload %d: %d notifications queued, want 1", i, n)
		}
	}
	a, err := db.Reader().GetRunArtifact(ctx, "j1", "r1")
	if err != nil || a.NodeID != "a1" || a.Status != storage.SnapshotPresent || !strings.Contains(a.TargetSnapshotJSON, `"base_dir":"/bk"`) {
		t.Fatalf("snapshot of the offline run: %+v %v", a, err)
	}
}

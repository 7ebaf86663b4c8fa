package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/snapshots"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// agentBackupHub is an API under test with agent sockets wired into the snapshot queues (through
// agentsock.Targets) and into restores (through a RestoreBridge), as the Hub composes them.
type agentBackupHub struct {
	*apitest.Hub
	sock  *agentsock.Hub
	snaps *snapshots.Service
	ops   *operations.Service
	c     *apitest.Client
}

func startAgentBackupHub(t *testing.T) *agentBackupHub {
	t.Helper()
	ah := &agentBackupHub{}
	ah.Hub = apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		restores := agentsock.NewRestoreBridge(cfg.Secrets)
		ah.sock = agentsock.New(agentsock.Config{DB: cfg.DB, Clock: cfg.Clock, Logger: cfg.Logger, Operations: restores,
			Snapshots: agentsock.StoreSnapshots{DB: cfg.DB, Store: cfg.Secrets, Clock: cfg.Clock}})
		op := opener.New(opener.Config{Secrets: cfg.Secrets, Logger: cfg.Logger,
			Remote: agentsock.Targets{Hub: ah.sock, Secrets: cfg.Secrets, Logger: cfg.Logger}})
		ah.snaps = snapshots.New(snapshots.Config{DB: cfg.DB, Clock: cfg.Clock, Opener: op, Logger: cfg.Logger})
		ah.ops = operations.New(operations.Config{DB: cfg.DB, Clock: cfg.Clock, Logger: cfg.Logger, DataDir: t.TempDir(), Opener: op, Remote: restores})
		restores.Attach(ah.sock, ah.ops)
		cfg.Agents, cfg.Snapshots, cfg.Operations = ah.sock, ah.snaps, ah.ops
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = ah.snaps.RunDeletes(ctx); done <- struct{}{} }()
	go func() { _ = ah.ops.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	ah.c = ah.Login(t)
	return ah
}

// agentProc is an in-process agent that can be stopped and started again on the same data
// directory.
type agentProc struct {
	id      string
	dataDir string
	managed *client.Managed
	stop    func()
}

// startAgent runs an agent until stop or the end of the test; token is needed the first time.
func (ah *agentBackupHub) startAgent(t *testing.T, dataDir, token string) *agentProc {
	t.Helper()
	managed, err := client.OpenManaged(dataDir, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := client.New(ctx, client.Options{HubURL: ah.URL, EnrollToken: token, DataDir: dataDir, Heartbeat: time.Second,
		Logger: log, Managed: managed, Backoff: &client.Backoff{Base: 10 * time.Millisecond, Cap: 100 * time.Millisecond},
		Executor: client.NewBackupExecutor(dataDir, managed, log), Restorer: client.NewRestoreExecutor(dataDir, managed, log)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	p := &agentProc{id: a.ID(), dataDir: dataDir, managed: managed}
	stopped := false
	p.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(p.stop)
	eventually(t, "agent connected", func() bool { return ah.sock.Connected(p.id) })
	return p
}

func (ah *agentBackupHub) token(t *testing.T) string {
	t.Helper()
	st, tok := ah.c.Post(t, "/api/agents/enrollment-tokens", map[string]any{"ttl_seconds": 600, "remaining_uses": 1})
	if st != http.StatusOK {
		t.Fatalf("create token: %d %v", st, tok)
	}
	return tok["token"].(string)
}

// seedAgentSnapshot indexes a successful run of an agent job whose snapshot is in baseDir on
// the agent's machine, with the files of a Bastion run there.
func (ah *agentBackupHub) seedAgentSnapshot(t *testing.T, agentID, jobID, runID, baseDir string) string {
	t.Helper()
	ctx := context.Background()
	snap, _ := json.Marshal(targets.RunTarget{NodeID: agentID, Target: localdir.Redact(baseDir)})
	ts := string(snap)
	now := ah.Clock.Now().Unix()
	err := ah.DB.Write(ctx, func(q storage.Q) error {
		if _, err := q.GetJob(ctx, jobID); err != nil {
			if err := q.InsertJob(ctx, storage.Job{ID: jobID, Name: "on agent", AgentID: &agentID, ScheduleTimezone: "UTC",
				OverlapPolicy: "queue", MissedRunPolicy: "skip", SpecJSON: fsSpec, CreatedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
		}
		if err := q.InsertRun(ctx, storage.Run{ID: runID, JobID: jobID, Status: storage.RunSuccess, StartedAt: now - 10,
			EndedAt: &now, TargetSnapshotJSON: &ts}); err != nil {
			return err
		}
		return q.UpsertRunArtifact(ctx, storage.RunArtifact{RunID: runID, JobID: jobID, NodeID: agentID, TargetType: "local_dir",
			TargetSnapshotJSON: ts, ArtifactFormat: "archive_v1", Status: storage.SnapshotPresent, StartedAt: now - 10,
			EndedAt: now, CreatedAt: now, UpdatedAt: now})
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(baseDir, jobID, runID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"payload.part000001", targets.ManifestName, targets.EntriesName, targets.CompleteName} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (ah *agentBackupHub) snapshot(t *testing.T, jobID, runID string) map[string]any {
	t.Helper()
	st, body := ah.c.Get(t, snapshotsURL(jobID, runID))
	if st != http.StatusOK {
		t.Fatalf("get snapshot: %d %v", st, body)
	}
	return body
}

// TestAgentSnapshotDeleteThroughAPI: deleting a snapshot that lives in an agent's directory goes
// to the agent. Connected, the files go and the snapshot is deleted; offline, the delete task
// waits (retrying) and completes once the agent is back and the task is retried.
func TestAgentSnapshotDeleteThroughAPI(t *testing.T) {
	t.Parallel()
	ah := startAgentBackupHub(t)
	dataDir, base := t.TempDir(), t.TempDir()
	agent := ah.startAgent(t, dataDir, ah.token(t))
	job := uuidN(1, 1)

	t.Run("Connected", func(t *testing.T) {
		run := uuidN(2, 1)
		dir := ah.seedAgentSnapshot(t, agent.id, job, run, base)
		if resp := ah.c.Do(t, "POST", snapshotsURL(job, run, "delete"), nil); resp.Status != http.StatusNoContent && resp.Status != http.StatusAccepted {
			t.Fatalf("delete: %s", resp)
		}
		eventually(t, "snapshot deleted", func() bool { return ah.snapshot(t, job, run)["status"] == storage.SnapshotDeleted })
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("run directory still on the agent's disk: %v", err)
		}
	})

	t.Run("OfflineThenBack", func(t *testing.T) {
		run := uuidN(2, 2)
		dir := ah.seedAgentSnapshot(t, agent.id, job, run, base)
		agent.stop()
		eventually(t, "agent gone", func() bool { return !ah.sock.Connected(agent.id) })
		if resp := ah.c.Do(t, "POST", snapshotsURL(job, run, "delete"), nil); resp.Status != http.StatusNoContent && resp.Status != http.StatusAccepted {
			t.Fatalf("delete: %s", resp)
		}
		var task map[string]any
		eventually(t, "delete task retrying", func() bool {
			_, task = ah.c.Get(t, snapshotsURL(job, run, "delete-task"))
			return task["status"] == storage.TaskRetrying
		})
		if task["last_error_kind"] != targets.KindNetwork || ah.snapshot(t, job, run)["status"] != storage.SnapshotDeleting {
			t.Fatalf("task while the agent is away: %v", task)
		}
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("files gone while the agent was away: %v", err)
		}
		agent = ah.startAgent(t, dataDir, "")
		if resp := ah.c.Do(t, "POST", snapshotsURL(job, run, "delete", "retry-now"), nil); resp.Status != http.StatusNoContent {
			t.Fatalf("retry now: %s", resp)
		}
		eventually(t, "snapshot deleted", func() bool { return ah.snapshot(t, job, run)["status"] == storage.SnapshotDeleted })
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("run directory still on the agent's disk: %v", err)
		}
		_, task = ah.c.Get(t, snapshotsURL(job, run, "delete-task"))
		if task["status"] != storage.TaskDone {
			t.Fatalf("delete task after the agent came back: %v", task)
		}
	})
}

// TestWebDAVListThroughAPI lists a real WebDAV server (rclone) with the Hub's credential and with
// an agent's, paged like fs_list.
func TestWebDAVListThroughAPI(t *testing.T) {
	t.Parallel()
	testtool.Require(t, "rclone")
	ctx := context.Background()
	share := t.TempDir()
	for _, p := range []string{"a.txt", "b.txt", ".hidden", "sub/c.txt"} {
		testtool.WriteFile(t, filepath.Join(share, p), []byte("data of "+p), 0o600, time.Unix(1700000000, 0))
	}
	baseURL, user, pass := testtool.StartRcloneWebDAV(t, share)
	ah := startAgentBackupHub(t)
	if st, body := ah.c.Put(t, "/api/secrets/webdav/nas", map[string]string{"username": user, "password": pass, "base_url": baseURL}); st != http.StatusOK && st != http.StatusNoContent {
		t.Fatalf("store hub secret: %d %v", st, body)
	}
	names := func(body map[string]any) []string {
		var out []string
		for _, e := range body["entries"].([]any) {
			out = append(out, e.(map[string]any)["name"].(string))
		}
		return out
	}

	t.Run("Hub", func(t *testing.T) {
		st, body := ah.c.Post(t, "/api/nodes/hub/webdav/list", map[string]any{"base_url": baseURL, "secret_name": "nas", "path": "/",
			"limit": 2, "hide_dotfiles": true, "type_sort": "dirs_first"})
		if st != http.StatusOK || fmt.Sprint(names(body)) != "[sub a.txt]" || body["next_cursor"] == nil || body["total"].(float64) != 4-1 {
			t.Fatalf("first page: %d %v", st, body)
		}
		st, body = ah.c.Post(t, "/api/nodes/hub/webdav/list", map[string]any{"base_url": baseURL, "secret_name": "nas", "path": "/",
			"limit": 2, "hide_dotfiles": true, "type_sort": "dirs_first", "cursor": body["next_cursor"]})
		if st != http.StatusOK || fmt.Sprint(names(body)) != "[b.txt]" || body["next_cursor"] != nil {
			t.Fatalf("second page: %d %v", st, body)
		}
		q := url.Values{"base_url": {baseURL}, "secret_name": {"nas"}, "path": {"/sub"}}
		st, body = ah.c.Get(t, "/api/nodes/hub/webdav/list?"+q.Encode())
		entries, _ := body["entries"].([]any)
		if st != http.StatusOK || len(entries) != 1 || entries[0].(map[string]any)["path"] != "/sub/c.txt" ||
			entries[0].(map[string]any)["size"].(float64) != float64(len("data of sub/c.txt")) {
			t.Fatalf("GET /sub: %d %v", st, body)
		}
		// The original's spellings: type_sort=file_first|dir_first, kind=symlink (none on WebDAV).
		q = url.Values{"base_url": {baseURL}, "secret_name": {"nas"}, "path": {"/"}, "type_sort": {"file_first"}, "hide_dotfiles": {"true"}}
		if st, body = ah.c.Get(t, "/api/nodes/hub/webdav/list?"+q.Encode()); st != http.StatusOK || fmt.Sprint(names(body)) != "[a.txt b.txt sub]" {
			t.Fatalf("GET type_sort=file_first: %d %v", st, body)
		}
		if st, body = ah.c.Post(t, "/api/nodes/hub/webdav/list", map[string]any{"base_url": baseURL, "secret_name": "nas", "path": "/",
			"type_sort": "dir_first", "kind": "symlink"}); st != http.StatusOK || body["total"].(float64) != 0 {
			t.Fatalf("POST type_sort=dir_first kind=symlink: %d %v", st, body)
		}
		for _, tc := range []struct {
			body   map[string]any
			status int
			code   string
		}{
			{map[string]any{"base_url": baseURL, "secret_name": "nope", "path": "/"}, 400, "missing_webdav_secret"},
			{map[string]any{"base_url": baseURL, "secret_name": "nas", "path": "/missing"}, 404, "path_not_found"},
			{map[string]any{"base_url": baseURL, "secret_name": "nas", "path": "/", "cursor": "bogus"}, 400, "invalid_cursor"},
			{map[string]any{"secret_name": "nas", "path": "/"}, 400, "invalid_base_url"},
		} {
			resp := ah.c.Do(t, "POST", "/api/nodes/hub/webdav/list", tc.body)
			if resp.Status != tc.status || resp.ErrorCode() != tc.code {
				t.Errorf("%v: %s, want %d %s", tc.body, resp, tc.status, tc.code)
			}
		}
	})

	t.Run("Agent", func(t *testing.T) {
		agent := ah.startAgent(t, t.TempDir(), ah.token(t))
		// The agent's own credential, stored in its scope through the API and pushed to it.
		secretPath := "/api/nodes/" + agent.id + "/secrets/webdav/agent-nas"
		if resp := ah.c.Do(t, "PUT", secretPath, map[string]string{"username": user, "password": pass, "base_url": baseURL}); resp.Status != http.StatusNoContent {
			t.Fatalf("store the agent's secret: %s", resp)
		}
		if items := ah.c.Do(t, "GET", "/api/nodes/"+agent.id+"/secrets/webdav", nil).JSONArray(t); len(items) != 1 {
			t.Fatalf("the agent's secrets: %v", items)
		}
		if items := ah.c.Do(t, "GET", "/api/secrets/webdav", nil).JSONArray(t); len(items) != 1 {
			t.Fatalf("the hub's secrets must not include the agent's: %v", items)
		}
		eventually(t, "secret on the agent", func() bool {
			_, err := agent.managed.Get(ctx, "", secrets.KindWebDAV, "agent-nas")
			return err == nil
		})
		path := "/api/nodes/" + agent.id + "/webdav/list"
		st, body := ah.c.Post(t, path, map[string]any{"base_url": baseURL, "secret_name": "agent-nas", "path": "/", "limit": 10})
		if st != http.StatusOK || fmt.Sprint(names(body)) != "[.hidden a.txt b.txt sub]" {
			t.Fatalf("agent listing: %d %v", st, body)
		}
		// The agent's credential goes to no other server: the Hub refuses before asking the
		// agent, and nothing reaches the other server.
		rogue := startRecorder(t)
		for _, method := range []string{"GET", "POST"} {
			var resp *apitest.Response
			if method == "GET" {
				resp = ah.c.Do(t, "GET", path+"?"+url.Values{"base_url": {rogue.URL + "/"}, "secret_name": {"agent-nas"}}.Encode(), nil)
			} else {
				resp = ah.c.Do(t, "POST", path, map[string]any{"base_url": rogue.URL + "/", "secret_name": "agent-nas", "path": "/"})
			}
			if resp.Status != 400 || resp.ErrorCode() != secrets.CodeOriginMismatch {
				t.Fatalf("%s agent listing on another server: %s", method, resp)
			}
		}
		// The agent checks too, with the origins the Hub sent it.
		bound, err := agent.managed.AllowedOrigins(ctx, "", secrets.KindWebDAV, "agent-nas")
		if o, _ := secrets.NormalizeOrigin(baseURL); err != nil || fmt.Sprint(bound) != "["+o+"]" {
			t.Fatalf("origins on the agent: %v %v", bound, err)
		}
		// A restore on the agent of a snapshot whose stored target names another server (an
		// edited database) is refused before the task reaches the agent.
		job, run := uuidN(1, 7), uuidN(2, 7)
		snap, _ := json.Marshal(targets.RunTarget{NodeID: agent.id, Target: webdav.Redact(rogue.URL+"/dav/", "agent-nas")})
		ts, now := string(snap), ah.Clock.Now().Unix()
		if err := ah.DB.Write(ctx, func(q storage.Q) error {
			if err := q.InsertJob(ctx, storage.Job{ID: job, Name: "dav on agent", AgentID: &agent.id, ScheduleTimezone: "UTC",
				OverlapPolicy: "queue", MissedRunPolicy: "skip", SpecJSON: fsSpec, CreatedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
			if err := q.InsertRun(ctx, storage.Run{ID: run, JobID: job, Status: storage.RunSuccess, StartedAt: now - 10, EndedAt: &now, TargetSnapshotJSON: &ts}); err != nil {
				return err
			}
			return q.UpsertRunArtifact(ctx, storage.RunArtifact{RunID: run, JobID: job, NodeID: agent.id, TargetType: "webdav",
				TargetSnapshotJSON: ts, ArtifactFormat: "archive_v1", Status: storage.SnapshotPresent, StartedAt: now - 10,
				EndedAt: now, CreatedAt: now, UpdatedAt: now})
		}); err != nil {
			t.Fatal(err)
		}
		if resp := ah.c.Do(t, "POST", "/api/runs/"+run+"/restore", map[string]any{
			"destination": map[string]any{"type": "local_fs", "node_id": agent.id, "directory": t.TempDir()}}); resp.Status != 400 ||
			resp.ErrorCode() != secrets.CodeOriginMismatch {
			t.Fatalf("restore on the agent from another server: %s", resp)
		}
		rogue.assertUntouched(t)
		// The Hub's own credential is not the agent's.
		if resp := ah.c.Do(t, "POST", path, map[string]any{"base_url": baseURL, "secret_name": "nas", "path": "/"}); resp.Status != 400 ||
			resp.ErrorCode() != "missing_webdav_secret" {
			t.Fatalf("hub-only secret on the agent: %s", resp)
		}
		if resp := ah.c.Do(t, "DELETE", secretPath, nil); resp.Status != http.StatusNoContent {
			t.Fatalf("delete the agent's secret: %s", resp)
		}
		eventually(t, "secret gone from the agent", func() bool {
			_, err := agent.managed.Get(ctx, "", secrets.KindWebDAV, "agent-nas")
			return err != nil
		})
		if resp := ah.c.Do(t, "PUT", "/api/nodes/nobody/secrets/webdav/x", map[string]string{"username": "u", "password": "p"}); resp.Status != 404 ||
			resp.ErrorCode() != "node_not_found" {
			t.Fatalf("secret of an unknown node: %s", resp)
		}
		agent.stop()
		eventually(t, "agent gone", func() bool { return !ah.sock.Connected(agent.id) })
		if resp := ah.c.Do(t, "POST", path, map[string]any{"base_url": baseURL, "secret_name": "agent-nas", "path": "/"}); resp.Status != 409 ||
			resp.ErrorCode() != "agent_offline" {
			t.Fatalf("offline agent: %s", resp)
		}
	})
}

// TestAgentRestoreRefusedThroughAPI: a restore on an agent that is not connected answers 400
// agent_not_connected, and one of a snapshot in a Hub directory 400 snapshot_not_reachable.
func TestAgentRestoreRefusedThroughAPI(t *testing.T) {
	t.Parallel()
	ah := startAgentBackupHub(t)
	agent := ah.startAgent(t, t.TempDir(), ah.token(t))
	base := t.TempDir()
	job, run := uuidN(1, 1), uuidN(2, 1)
	ah.seedAgentSnapshot(t, agent.id, job, run, base)
	hubJob, hubRun := uuidN(1, 2), uuidN(2, 2)
	(&backupHub{Hub: ah.Hub}).insertJob(t, hubJob, fsSpec)
	(&backupHub{Hub: ah.Hub}).seedSnapshot(t, hubJob, hubRun, base, ah.Clock.Now().Unix(), true)
	restore := func(runID string) *apitest.Response {
		return ah.c.Do(t, "POST", "/api/runs/"+runID+"/restore", map[string]any{
			"destination": map[string]any{"type": "local_fs", "node_id": agent.id, "directory": t.TempDir()}})
	}
	if resp := restore(hubRun); resp.Status != 400 || resp.ErrorCode() != agentsock.CodeSnapshotUnreachable {
		t.Fatalf("hub snapshot on an agent: %s", resp)
	}
	agent.stop()
	eventually(t, "agent gone", func() bool { return !ah.sock.Connected(agent.id) })
	if resp := restore(run); resp.Status != 400 || resp.ErrorCode() != agentsock.CodeAgentNotConnected {
		t.Fatalf("offline agent: %s", resp)
	}
}

package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// sameFiles fails unless every regular file below src is in got (at its archive path) with
// the same bytes. WebDAV keeps neither modes nor times, so only contents are compared.
func sameFiles(t *testing.T, src, got string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		want, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		have, err := os.ReadFile(testtool.ArchivePath(got, p))
		if err != nil || !bytes.Equal(want, have) {
			t.Errorf("%s: restored copy missing or different (%v)", p, err)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// agentRealSnapshot backs src up into baseDir with the real pipeline and indexes it as a run of
// an agent job whose snapshot is in that agent's directory.
func (ah *agentBackupHub) agentRealSnapshot(t *testing.T, agentID, jobID, runID, src, baseDir string) {
	t.Helper()
	raw, _, _ := localBackup(t, jobID, runID, src, baseDir, ah.Clock.Now())
	snap, _ := json.Marshal(targets.RunTarget{NodeID: agentID, Target: localdir.Redact(baseDir)})
	ts, now := string(snap), ah.Clock.Now().Unix()
	ctx := context.Background()
	err := ah.DB.Write(ctx, func(q storage.Q) error {
		if err := q.InsertJob(ctx, storage.Job{ID: jobID, Name: "on agent", AgentID: &agentID, ScheduleTimezone: "UTC",
			OverlapPolicy: "queue", MissedRunPolicy: "skip", SpecJSON: string(raw), CreatedAt: now, UpdatedAt: now}); err != nil {
			return err
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
}

// TestRestoreToWebDAVThroughAPI restores snapshots into a real WebDAV server (rclone) from the
// Hub and on a real agent over loopback, each with its own credential, and checks that a
// credential is never sent to a server it is not bound to.
func TestRestoreToWebDAVThroughAPI(t *testing.T) {
	t.Parallel()
	share := t.TempDir()
	baseURL, user, pass := testtool.StartRcloneWebDAV(t, share)
	rogue := startRecorder(t)
	ah := startAgentBackupHub(t)
	bh := &backupHub{Hub: ah.Hub, c: ah.c}
	if st, body := ah.c.Put(t, "/api/secrets/webdav/nas", map[string]string{"username": user, "password": pass, "base_url": baseURL}); st != http.StatusOK && st != http.StatusNoContent {
		t.Fatalf("store hub secret: %d %v", st, body)
	}
	src := filepath.Join(t.TempDir(), "src")
	testtool.BuildTree(t, src, 256<<10)
	job, run := uuidN(1, 1), uuidN(2, 1)
	bh.insertJob(t, job, fsSpec)
	bh.realSnapshot(t, job, run, src, filepath.Join(t.TempDir(), "bk"))
	restore := func(runID string, body map[string]any) *apitest.Response {
		return ah.c.Do(t, "POST", "/api/runs/"+runID+"/restore", body)
	}
	webdavDest := func(base, secret, prefix string) map[string]any {
		return map[string]any{"type": "webdav", "base_url": base, "secret_name": secret, "prefix": prefix}
	}

	t.Run("Hub", func(t *testing.T) {
		resp := restore(run, map[string]any{"destination": webdavDest(baseURL, "nas", "restores/hub"), "conflict_policy": "overwrite"})
		if resp.Status != http.StatusOK {
			t.Fatalf("restore: %s", resp)
		}
		var started struct {
			OpID string `json:"op_id"`
		}
		resp.Decode(t, &started)
		op := bh.waitOperation(t, started.OpID)
		if op["status"] != "success" || op["node_id"] != "hub" {
			t.Fatalf("operation: %v", op)
		}
		if n := sameFiles(t, src, filepath.Join(share, "restores", "hub")); n == 0 {
			t.Fatal("the tree has no files")
		}
		sum := op["summary"].(map[string]any)
		d := sum["destination"].(map[string]any)
		if d["type"] != "webdav" || d["prefix_url"] != baseURL+"restores/hub/" || d["node_id"] != "hub" || sum["conflict_policy"] != "overwrite" {
			t.Fatalf("summary: %v", sum)
		}
		if strings.Contains(string(resp.Body), pass) {
			t.Fatal("the password leaked into the answer")
		}
		meta, err := os.ReadDir(filepath.Join(share, "restores", "hub", ".bastion-meta", "restore", started.OpID, "entries"))
		if err != nil || len(meta) == 0 {
			t.Fatalf("entry records: %d, %v", len(meta), err)
		}
	})

	t.Run("HubSelection", func(t *testing.T) {
		sel := strings.TrimPrefix(filepath.Join(src, "small"), "/")
		resp := restore(run, map[string]any{"destination": webdavDest(baseURL, "nas", "restores/sel"), "conflict_policy": "fail",
			"selection": map[string]any{"files": []string{}, "dirs": []string{sel}}})
		var started struct {
			OpID string `json:"op_id"`
		}
		resp.Decode(t, &started)
		if op := bh.waitOperation(t, started.OpID); op["status"] != "success" {
			t.Fatalf("operation: %v", op)
		}
		sameFiles(t, filepath.Join(src, "small"), filepath.Join(share, "restores", "sel"))
		entries, _ := os.ReadDir(filepath.Join(share, "restores", "sel", filepath.Dir(sel)))
		if len(entries) != 1 {
			t.Fatalf("selection restored more than its directory: %v", entries)
		}
	})

	t.Run("HubRefusals", func(t *testing.T) {
		for _, tc := range []struct {
			name        string
			dest        map[string]any
			code, field string
		}{
			{"OtherServer", webdavDest(rogue.URL+"/dav/", "nas", "x"), secrets.CodeOriginMismatch, "destination.base_url"},
			{"NoSuchSecret", webdavDest(baseURL, "nope", "x"), "missing_webdav_secret", "destination.secret_name"},
			{"EscapingPrefix", webdavDest(baseURL, "nas", "../x"), "invalid_destination", "destination.prefix"},
			{"EncodedPrefix", webdavDest(baseURL, "nas", "a/%2e%2e/../.."), "invalid_destination", "destination.prefix"},
			{"CredentialsInURL", webdavDest("http://u:p@"+strings.TrimPrefix(baseURL, "http://"), "nas", "x"), "invalid_destination", "destination.base_url"},
		} {
			resp := ah.c.Do(t, "POST", "/api/runs/"+run+"/restore", map[string]any{"destination": tc.dest})
			var e struct {
				Error   string `json:"error"`
				Details struct {
					Field string `json:"field"`
				} `json:"details"`
			}
			resp.Decode(t, &e)
			if resp.Status != http.StatusBadRequest || e.Error != tc.code || e.Details.Field != tc.field {
				t.Errorf("%s: %s, want 400 %s on %s", tc.name, resp, tc.code, tc.field)
			}
		}
		rogue.assertUntouched(t)
		if _, err := os.Stat(filepath.Join(share, "x")); err == nil {
			t.Fatal("a refused restore wrote to the server")
		}
	})

	t.Run("Agent", func(t *testing.T) {
		agent := ah.startAgent(t, t.TempDir(), ah.token(t))
		if resp := ah.c.Do(t, "PUT", "/api/nodes/"+agent.id+"/secrets/webdav/agent-nas",
			map[string]string{"username": user, "password": pass, "base_url": baseURL}); resp.Status != http.StatusNoContent {
			t.Fatalf("store the agent's secret: %s", resp)
		}
		eventually(t, "secret on the agent", func() bool {
			_, err := agent.managed.Get(context.Background(), "", secrets.KindWebDAV, "agent-nas")
			return err == nil
		})
		aJob, aRun := uuidN(1, 2), uuidN(2, 2)
		ah.agentRealSnapshot(t, agent.id, aJob, aRun, src, filepath.Join(t.TempDir(), "agent-bk"))
		executor := map[string]any{"node_id": agent.id}

		resp := restore(aRun, map[string]any{"destination": webdavDest(baseURL, "agent-nas", "restores/agent"), "executor": executor})
		if resp.Status != http.StatusOK {
			t.Fatalf("restore on the agent: %s", resp)
		}
		var started struct {
			OpID string `json:"op_id"`
		}
		resp.Decode(t, &started)
		op := bh.waitOperation(t, started.OpID)
		if op["status"] != "success" || op["node_id"] != agent.id {
			t.Fatalf("operation: %v", op)
		}
		sameFiles(t, src, filepath.Join(share, "restores", "agent"))
		d := op["summary"].(map[string]any)["destination"].(map[string]any)
		if d["type"] != "webdav" || d["prefix_url"] != baseURL+"restores/agent/" || d["node_id"] != agent.id {
			t.Fatalf("summary destination: %v", d)
		}

		for _, tc := range []struct {
			name        string
			dest        map[string]any
			code, field string
		}{
			// The Hub's credential is not the agent's.
			{"HubSecretNotOnAgent", webdavDest(baseURL, "nas", "y"), "missing_webdav_secret", "destination.secret_name"},
			{"OtherServer", webdavDest(rogue.URL+"/", "agent-nas", "y"), secrets.CodeOriginMismatch, "destination.base_url"},
		} {
			resp := ah.c.Do(t, "POST", "/api/runs/"+aRun+"/restore", map[string]any{"destination": tc.dest, "executor": executor})
			var e struct {
				Error   string `json:"error"`
				Details struct {
					Field string `json:"field"`
				} `json:"details"`
			}
			resp.Decode(t, &e)
			if resp.Status != http.StatusBadRequest || e.Error != tc.code || e.Details.Field != tc.field {
				t.Errorf("%s: %s, want 400 %s on %s", tc.name, resp, tc.code, tc.field)
			}
		}
		rogue.assertUntouched(t)
	})
}

package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi/apitest"
)

// startAgentProcess runs `bastion agent` as a child process until the test ends.
func startAgentProcess(t *testing.T, hubURL, token, dataDir string) *hubProcess {
	t.Helper()
	args := []string{"agent", "--hub-url", hubURL, "--name", "e2e", "--data-dir", dataDir, "--heartbeat-seconds", "1"}
	if token != "" {
		args = append(args, "--enroll-token", token)
	}
	return spawn(t, "agent", args)
}

// enrollAgentProcess creates a one-use enrollment token, starts an agent with it and waits until
// the agent is connected; it returns the agent's process and id.
func enrollAgentProcess(t *testing.T, hub *hubProcess, c *apitest.Client, dataDir string) (*hubProcess, string) {
	t.Helper()
	st, tok := c.Post(t, "/api/agents/enrollment-tokens", map[string]any{"ttl_seconds": 3600, "remaining_uses": 1})
	if st != http.StatusOK {
		t.Fatalf("enrollment token: %d %v", st, tok)
	}
	p := startAgentProcess(t, hub.base, tok["token"].(string), dataDir)
	return p, onlineAgent(t, c)
}

// onlineAgent waits until one agent is connected and returns its id.
func onlineAgent(t *testing.T, c *apitest.Client) string {
	t.Helper()
	var agentID string
	poll(t, "agent online", func() bool {
		var list struct {
			Items []struct {
				ID        string `json:"id"`
				Connected bool   `json:"connected"`
			} `json:"items"`
		}
		_ = json.Unmarshal(c.Do(t, "GET", "/api/agents?status=online", nil).Body, &list)
		for _, a := range list.Items {
			if a.Connected {
				agentID = a.ID
			}
		}
		return agentID != ""
	})
	return agentID
}

// backupOnAgent creates a job named name with spec on agent agentID, runs it and wants it to
// succeed there.
func backupOnAgent(t *testing.T, c *apitest.Client, agentID, name string, spec map[string]any) (jobID, runID string) {
	t.Helper()
	st, job := c.Post(t, "/api/jobs", map[string]any{"name": name, "agent_id": agentID, "overlap_policy": "queue", "spec": spec})
	if st != http.StatusOK {
		t.Fatalf("create job: %d %v", st, job)
	}
	jobID = job["id"].(string)
	runID = runNow(t, c, jobID)
	if run := waitRunEnd(t, c, runID); run["status"] != "success" || run["node_id"] != agentID {
		t.Fatalf("run on the agent: %v", run)
	}
	return jobID, runID
}

// restoreOnAgentAndCompare restores run runID on agent agentID into a new directory and compares
// it with src, the backed-up tree.
func restoreOnAgentAndCompare(t *testing.T, c *apitest.Client, agentID, runID, src string) {
	t.Helper()
	into := filepath.Join(t.TempDir(), "restored")
	st, started := c.Post(t, "/api/runs/"+runID+"/restore", map[string]any{
		"destination": map[string]any{"type": "local_fs", "node_id": agentID, "directory": into}})
	if st != http.StatusOK {
		t.Fatalf("restore: %d %v", st, started)
	}
	if op := waitOp(t, c, started["op_id"].(string)); op["status"] != "success" || op["node_id"] != agentID {
		t.Fatalf("restore on the agent: %v", op)
	}
	testtool.CompareTrees(t, src, testtool.ArchivePath(into, src), false)
}

// TestAgentJobEndToEnd is the README's agent quick start on real bastion processes: enroll an
// agent on the same machine, create an age-encrypted job that runs on it, run it, restore its
// snapshot on the agent into a new directory (the Hub copies the age key to the agent first) and
// compare, then delete the snapshot, which the agent removes from its disk.
func TestAgentJobEndToEnd(t *testing.T) {
	t.Parallel()
	src, dst := filepath.Join(t.TempDir(), "src"), t.TempDir()
	testtool.BuildTree(t, src, 2<<20)
	hub := startHubProcess(t, t.TempDir())
	c := hub.client(t)
	_, agentID := enrollAgentProcess(t, hub, c, t.TempDir())

	spec := map[string]any{"v": 1, "type": "filesystem",
		"pipeline": map[string]any{"encryption": map[string]any{"type": "age_x25519", "key_name": "e2e"}},
		"source":   map[string]any{"paths": []string{src}}, "target": map[string]any{"type": "local_dir", "base_dir": dst}}
	jobID, runID := backupOnAgent(t, c, agentID, "on the agent", spec)
	restoreOnAgentAndCompare(t, c, agentID, runID, src)

	runDir := filepath.Join(dst, jobID, runID)
	if resp := c.Do(t, "POST", "/api/jobs/"+jobID+"/snapshots/"+runID+"/delete", nil); resp.Status >= 300 {
		t.Fatalf("delete snapshot: %s", resp)
	}
	poll(t, "snapshot deleted", func() bool {
		_, s := c.Get(t, "/api/jobs/"+jobID+"/snapshots/"+runID)
		return s["status"] == "deleted"
	})
	if _, err := os.Stat(runDir); !os.IsNotExist(err) {
		t.Fatalf("snapshot still on the agent's disk: %v", err)
	}
}

// TestAgentS3JobEndToEnd: a job on an agent backs up to S3 (versitygw) with a credential saved
// for that agent, the snapshot restores on the agent byte for byte, verifies, and its delete
// removes the objects. The secret key is never written in clear on the agent's disk.
func TestAgentS3JobEndToEnd(t *testing.T) {
	t.Parallel()
	srv := testtool.StartVersityGW(t)
	src := filepath.Join(t.TempDir(), "src")
	testtool.BuildTree(t, src, 2<<20)
	hub := startHubProcess(t, t.TempDir())
	c := hub.client(t)
	agentData := t.TempDir()
	_, agentID := enrollAgentProcess(t, hub, c, agentData)
	if st, body := c.Put(t, "/api/nodes/"+agentID+"/secrets/s3/store", map[string]any{"access_key_id": srv.AccessKey,
		"secret_access_key": srv.SecretKey, "allowed_origins": []string{srv.Endpoint}}); st/100 != 2 {
		t.Fatalf("store s3 secret for the agent: %d %v", st, body)
	}

	spec := map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{src}},
		"target": s3Target(srv, srv.Endpoint, "agent")}
	jobID, runID := backupOnAgent(t, c, agentID, "s3 on the agent", spec)
	runDir := filepath.Join(srv.Dir, srv.Bucket, "agent", jobID, runID)
	if _, err := os.Stat(filepath.Join(runDir, "complete.json")); err != nil {
		t.Fatalf("complete.json in the bucket: %v", err)
	}

	restoreOnAgentAndCompare(t, c, agentID, runID, src)

	_, body := c.Post(t, "/api/runs/"+runID+"/verify", nil)
	if op := waitOp(t, c, body["op_id"].(string)); op["status"] != "success" {
		t.Fatalf("verify: %v", op)
	}
	if resp := c.Do(t, "POST", "/api/jobs/"+jobID+"/snapshots/"+runID+"/delete", nil); resp.Status >= 300 {
		t.Fatalf("delete snapshot: %s", resp)
	}
	poll(t, "snapshot deleted", func() bool {
		_, s := c.Get(t, "/api/jobs/"+jobID+"/snapshots/"+runID)
		return s["status"] == "deleted"
	})
	if entries, _ := os.ReadDir(runDir); len(entries) != 0 {
		t.Fatalf("objects left after the delete: %v", entries)
	}
	_ = filepath.WalkDir(agentData, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), srv.SecretKey) {
				t.Errorf("the S3 secret key is in clear in the agent's %s", p)
			}
		}
		return nil
	})
}

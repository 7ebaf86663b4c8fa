package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi/apitest"
)

// poll calls get until done says the answer is final or the test's deadline passes.
func poll(t *testing.T, what string, get func() map[string]any, done func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}
	for {
		v := get()
		if done(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, v)
		}
		time.Sleep(20 * time.Millisecond) // polling an external process until a deadline
	}
}

// TestAgentJobEndToEnd is the README's agent quick start on the composed Hub and agent commands:
// enroll an agent on the same machine, create an encrypted job that runs on it, run it, restore
// its snapshot on the agent into a new directory (the Hub copies the age key to the agent first),
// then delete the snapshot, which the agent removes from its disk.
func TestAgentJobEndToEnd(t *testing.T) {
	t.Parallel()
	src, dst, agentData := filepath.Join(t.TempDir(), "src"), t.TempDir(), t.TempDir()
	testtool.BuildTree(t, src, 2<<20)
	base, stopHub, hubLogs := startHub(t)
	defer func() {
		if t.Failed() {
			t.Logf("hub log:\n%s", hubLogs.String())
		}
	}()
	c := (&apitest.Hub{URL: base}).Login(t)
	st, tok := c.Post(t, "/api/agents/enrollment-tokens", map[string]any{"ttl_seconds": 3600, "remaining_uses": 1})
	if st != http.StatusOK {
		t.Fatalf("enrollment token: %d %v", st, tok)
	}

	agentLogs := &syncBuf{}
	ctx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- run(ctx, []string{"agent", "--hub-url", base, "--enroll-token", tok["token"].(string), "--name", "e2e",
			"--data-dir", agentData, "--heartbeat-seconds", "1"}, func(string) string { return "" }, &bytes.Buffer{}, agentLogs)
	}()
	defer func() {
		stopAgent()
		if err := <-agentDone; err != nil {
			t.Errorf("agent: %v", err)
		}
		if err := stopHub(); err != nil {
			t.Errorf("hub: %v", err)
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", agentLogs.String())
		}
	}()
	var agentID string
	poll(t, "agent online", func() map[string]any {
		resp := c.Do(t, "GET", "/api/agents?status=online", nil)
		var list struct {
			Items []struct {
				ID        string `json:"id"`
				Connected bool   `json:"connected"`
			} `json:"items"`
		}
		_ = json.Unmarshal(resp.Body, &list)
		for _, a := range list.Items {
			if a.Connected {
				agentID = a.ID
			}
		}
		return map[string]any{"agent": agentID}
	}, func(m map[string]any) bool { return m["agent"] != "" })

	spec := json.RawMessage(`{"v":1,"type":"filesystem","pipeline":{"encryption":{"type":"age_x25519","key_name":"e2e"}},` +
		`"source":{"paths":[` + quote(src) + `]},"target":{"type":"local_dir","base_dir":` + quote(dst) + `}}`)
	st, job := c.Post(t, "/api/jobs", map[string]any{"name": "on the agent", "agent_id": agentID, "overlap_policy": "queue", "spec": spec})
	if st != http.StatusOK {
		t.Fatalf("create job: %d %v", st, job)
	}
	jobID := job["id"].(string)
	st, queued := c.Post(t, "/api/jobs/"+jobID+"/run", nil)
	if st != http.StatusOK {
		t.Fatalf("run now: %d %v", st, queued)
	}
	runID := queued["run_id"].(string)
	ran := poll(t, "run ended", func() map[string]any { _, r := c.Get(t, "/api/runs/"+runID); return r },
		func(r map[string]any) bool { return r["status"] != "queued" && r["status"] != "running" })
	if ran["status"] != "success" {
		t.Fatalf("run on the agent: %v", ran)
	}

	into := filepath.Join(t.TempDir(), "restored")
	st, started := c.Post(t, "/api/runs/"+runID+"/restore", map[string]any{
		"destination": map[string]any{"type": "local_fs", "node_id": agentID, "directory": into}})
	if st != http.StatusOK && st != http.StatusAccepted {
		t.Fatalf("restore: %d %v", st, started)
	}
	opID, _ := started["op_id"].(string)
	if opID == "" {
		opID, _ = started["id"].(string)
	}
	op := poll(t, "restore ended", func() map[string]any { _, o := c.Get(t, "/api/operations/"+opID); return o },
		func(o map[string]any) bool { return o["status"] != "running" })
	if op["status"] != "success" || op["node_id"] != agentID {
		t.Fatalf("restore on the agent: %v", op)
	}
	testtool.CompareTrees(t, src, testtool.ArchivePath(into, src), false)

	runDir := filepath.Join(dst, jobID, runID)
	if resp := c.Do(t, "POST", "/api/jobs/"+jobID+"/snapshots/"+runID+"/delete", nil); resp.Status >= 300 {
		t.Fatalf("delete snapshot: %s", resp)
	}
	poll(t, "snapshot deleted", func() map[string]any { _, s := c.Get(t, "/api/jobs/"+jobID+"/snapshots/"+runID); return s },
		func(s map[string]any) bool { return s["status"] == "deleted" })
	if _, err := os.Stat(runDir); !os.IsNotExist(err) {
		t.Fatalf("snapshot still on the agent's disk: %v", err)
	}
}

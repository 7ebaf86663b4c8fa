package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"sort"
	"testing"

	"github.com/bastion-backup/bastion/engine/testtool"
)

// TestBulkDeployEndToEnd: on real bastion processes, a Hub job is deployed by a job_deploy bulk
// operation to two agents selected by label, and running each copy gives one successful run on
// each agent.
func TestBulkDeployEndToEnd(t *testing.T) {
	t.Parallel()
	src, dst := filepath.Join(t.TempDir(), "src"), t.TempDir()
	testtool.BuildTree(t, src, 256<<10)
	hub := startHubProcess(t, t.TempDir())
	c := hub.client(t)
	for range 2 {
		st, tok := c.Post(t, "/api/agents/enrollment-tokens", map[string]any{"ttl_seconds": 3600, "remaining_uses": 1})
		if st != http.StatusOK {
			t.Fatalf("enrollment token: %d %v", st, tok)
		}
		startAgentProcess(t, hub.base, tok["token"].(string), t.TempDir())
	}
	poll(t, "two agents online", func() bool {
		var list struct{ Total int }
		_ = json.Unmarshal(c.Do(t, "GET", "/api/agents?status=online", nil).Body, &list)
		return list.Total == 2
	})
	var list struct {
		Items []struct{ ID string }
	}
	_ = json.Unmarshal(c.Do(t, "GET", "/api/agents", nil).Body, &list)
	var agents []string
	for _, a := range list.Items {
		agents = append(agents, a.ID)
		if resp := c.Do(t, "POST", "/api/agents/"+a.ID+"/labels/add", map[string]any{"labels": []string{"e2e"}}); resp.Status != http.StatusNoContent {
			t.Fatalf("label: %s", resp)
		}
	}
	sort.Strings(agents)

	spec := map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{src}},
		"target": map[string]any{"type": "local_dir", "base_dir": dst}}
	st, job := c.Post(t, "/api/jobs", map[string]any{"name": "docs", "overlap_policy": "queue", "spec": spec})
	if st != http.StatusOK {
		t.Fatalf("create job: %d %v", st, job)
	}
	st, op := c.Post(t, "/api/bulk-operations", map[string]any{"kind": "job_deploy",
		"selector": map[string]any{"labels": []string{"e2e"}}, "payload": map[string]any{"source_job_id": job["id"]}})
	if st != http.StatusOK {
		t.Fatalf("deploy: %d %v", st, op)
	}
	var detail struct {
		Status  string
		Success int
		Items   []struct{ AgentID, Status string }
	}
	poll(t, "deploy done", func() bool {
		_ = json.Unmarshal(c.Do(t, "GET", "/api/bulk-operations/"+op["op_id"].(string), nil).Body, &detail)
		return detail.Status == "done"
	})
	if detail.Success != 2 {
		t.Fatalf("deploy: %+v", detail)
	}
	for _, agent := range agents {
		var jobs struct {
			Items []struct{ ID, Name string }
		}
		_ = json.Unmarshal(c.Do(t, "GET", "/api/jobs?scope=agent:"+agent, nil).Body, &jobs)
		if len(jobs.Items) != 1 || jobs.Items[0].Name != "docs ("+agent+")" {
			t.Fatalf("jobs of %s: %+v", agent, jobs)
		}
		runID := runNow(t, c, jobs.Items[0].ID)
		if run := waitRunEnd(t, c, runID); run["status"] != "success" || run["node_id"] != agent {
			t.Fatalf("run of the copy on %s: %v", agent, run)
		}
	}
}

package main

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi/apitest"
)

// TestAgentLocalSnapshotEndToEnd, on real bastion processes: a snapshot that an age-encrypted job
// wrote into a directory of its agent is browsed in the restore picker (pages, name filter), one
// picked file is restored on the agent, the snapshot is verified on the agent, fails verification
// naming the part once a part is damaged in the agent's directory, and cannot be browsed while
// the agent is down (409 agent_offline).
func TestAgentLocalSnapshotEndToEnd(t *testing.T) {
	t.Parallel()
	src, dst := filepath.Join(t.TempDir(), "src"), t.TempDir()
	testtool.BuildTree(t, src, 2<<20)
	hub := startHubProcess(t, t.TempDir())
	c := hub.client(t)
	agentDir := t.TempDir()
	agent, agentID := enrollAgentProcess(t, hub, c, agentDir)

	spec := map[string]any{"v": 1, "type": "filesystem",
		"pipeline": map[string]any{"encryption": map[string]any{"type": "age_x25519", "key_name": "local"}},
		"source":   map[string]any{"paths": []string{src}},
		"target":   map[string]any{"type": "local_dir", "base_dir": dst, "part_size_bytes": 1 << 20}}
	st, job := c.Post(t, "/api/jobs", map[string]any{"name": "kept on the agent", "agent_id": agentID, "overlap_policy": "queue", "spec": spec})
	if st != http.StatusOK {
		t.Fatalf("create job: %d %v", st, job)
	}
	jobID := job["id"].(string)
	runID := runNow(t, c, jobID)
	if run := waitRunEnd(t, c, runID); run["status"] != "success" {
		t.Fatalf("run on the agent: %v", run)
	}

	// The picker: page through small/d03 (17 files), then find one by name.
	root := strings.TrimPrefix(src, "/")
	type page struct {
		Total      int  `json:"total"`
		NextCursor *int `json:"next_cursor"`
		Entries    []struct {
			Name, Path, Kind string
			Size             int64
		} `json:"entries"`
	}
	entries := func(q url.Values) (*apitest.Response, page) {
		resp := c.Do(t, "GET", "/api/runs/"+runID+"/entries?"+q.Encode(), nil)
		var p page
		if resp.Status == http.StatusOK {
			resp.Decode(t, &p)
		}
		return resp, p
	}
	var seen []string
	q := url.Values{"prefix": {root + "/small/d03"}, "limit": {"5"}}
	for {
		resp, p := entries(q)
		if resp.Status != http.StatusOK {
			t.Fatalf("entries of a snapshot on the agent: %s", resp)
		}
		for _, e := range p.Entries {
			seen = append(seen, e.Name)
		}
		if p.NextCursor == nil {
			break
		}
		q.Set("cursor", strconv.Itoa(*p.NextCursor))
	}
	if len(seen) != 17 || seen[0] != "f003.txt" || seen[16] != "f115.txt" {
		t.Fatalf("small/d03 through the picker: %v", seen)
	}
	resp, p := entries(url.Values{"prefix": {root + "/small/d03"}, "q": {"F031"}})
	if resp.Status != http.StatusOK || len(p.Entries) != 1 || p.Entries[0].Kind != "file" {
		t.Fatalf("filter by name: %s", resp)
	}
	picked := p.Entries[0].Path

	// Restore just that file on the agent.
	into := filepath.Join(t.TempDir(), "restored")
	st, started := c.Post(t, "/api/runs/"+runID+"/restore", map[string]any{
		"destination": map[string]any{"type": "local_fs", "node_id": agentID, "directory": into},
		"selection":   map[string]any{"files": []string{picked}}})
	if st != http.StatusOK {
		t.Fatalf("restore: %d %v", st, started)
	}
	if op := waitOp(t, c, started["op_id"].(string)); op["status"] != "success" {
		t.Fatalf("restore of one file on the agent: %v", op)
	}
	var restored []string
	_ = filepath.Walk(into, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			restored = append(restored, p)
		}
		return err
	})
	want := filepath.Join(into, filepath.FromSlash(picked))
	if len(restored) != 1 || restored[0] != want ||
		testtool.FileHash(t, want) != testtool.FileHash(t, filepath.Join(src, "small", "d03", "f031.txt")) {
		t.Fatalf("restored %v, want exactly %s with the source's bytes", restored, want)
	}

	// Verify on the agent, then damage a part in the agent's directory.
	verify := func() map[string]any {
		st, body := c.Post(t, "/api/runs/"+runID+"/verify", nil)
		if st != http.StatusOK {
			t.Fatalf("verify: %d %v", st, body)
		}
		return waitOp(t, c, body["op_id"].(string))
	}
	op := verify()
	if sum, _ := op["summary"].(map[string]any); op["status"] != "success" || op["node_id"] != agentID || sum["ok"] != true {
		t.Fatalf("verify on the agent: %v", op)
	}
	part := filepath.Join(dst, jobID, runID, "payload.part000002")
	f, err := os.OpenFile(part, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff, 0x00, 0xff}, 4096)
	f.Close()
	if op := verify(); op["status"] != "failed" || !strings.Contains(op["error"].(string), "payload.part000002") {
		t.Fatalf("verify of a damaged part: %v", op)
	}

	// The agent stops: its snapshot cannot be browsed.
	agent.cmd.Process.Signal(syscall.SIGTERM)
	<-agent.done
	poll(t, "agent disconnected", func() bool {
		resp, _ := entries(url.Values{"prefix": {root}})
		return resp.Status == http.StatusConflict && resp.ErrorCode() == "agent_offline"
	})
}

package agentsock_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// pickerTree writes a source tree for the restore picker: a directory with enough children to
// page through, names to filter by, a dotfile and subdirectories.
func pickerTree(t *testing.T, root string) {
	t.Helper()
	for i := range 25 {
		testtool.WriteFile(t, filepath.Join(root, "logs", fmt.Sprintf("app-%02d.log", i)), testtool.RandBytes(100+i*13, uint64(i)), 0o644, testtool.TreeTime)
	}
	for name, data := range map[string]string{
		"logs/ERROR-1.log": "boom", "logs/error-2.log": "bang", "logs/.hidden": "shh", "logs/old/rotated.log": "old",
		"docs/guide.md": "# guide", "README.md": "read me",
	} {
		testtool.WriteFile(t, filepath.Join(root, filepath.FromSlash(name)), []byte(data), 0o644, testtool.TreeTime)
	}
}

// api serves the real HTTP API over rs's database and operations, as the Hub does.
func (rs *restoreSetup) api(t *testing.T) *apitest.Client {
	t.Helper()
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.DB, cfg.Operations, cfg.Agents = rs.db, rs.ops, rs.hub
	}))
	return hub.Login(t)
}

type entriesPage struct {
	Prefix     string          `json:"prefix"`
	Cursor     int             `json:"cursor"`
	NextCursor *int            `json:"next_cursor"`
	Total      int             `json:"total"`
	Entries    []restore.Child `json:"entries"`
}

func getEntries(t *testing.T, c *apitest.Client, runID string, q url.Values) (*apitest.Response, entriesPage) {
	t.Helper()
	resp := c.Do(t, http.MethodGet, "/api/runs/"+runID+"/entries?"+q.Encode(), nil)
	var page entriesPage
	if resp.Status == http.StatusOK {
		resp.Decode(t, &page)
	}
	return resp, page
}

func errorReason(t *testing.T, resp *apitest.Response) string {
	t.Helper()
	var env struct {
		Details struct {
			Reason string `json:"reason"`
		} `json:"details"`
	}
	_ = json.Unmarshal(resp.Body, &env)
	return env.Details.Reason
}

// TestEntriesOnAgent: the restore picker of a snapshot in an agent's directory, through the
// API. The agent answers every page exactly as the Hub computes it from the same index (prefix,
// paging, name filter, kind, dotfiles, order), caches the index under its data directory, and
// an agent that is gone, or goes away mid-request, is an explicit 409.
func TestEntriesOnAgent(t *testing.T) {
	t.Parallel()
	rs := newRestoreSetup(t, false)
	src, dst := filepath.Join(t.TempDir(), "src"), t.TempDir()
	pickerTree(t, src)
	jobID, runID := rs.backupOnAgent(t, src, dst, `{"type":"none"}`)
	index := filepath.Join(dst, jobID, runID, targets.EntriesName)
	c := rs.api(t)
	root := strings.TrimPrefix(src, "/")

	// want is the page the Hub computes for its own snapshots.
	want := func(opts restore.ListOptions) restore.Page {
		t.Helper()
		p, err := restore.List(index, opts)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	same := func(what string, got entriesPage, w restore.Page) {
		t.Helper()
		next := ""
		if got.NextCursor != nil {
			next = fmt.Sprint(*got.NextCursor)
		}
		if got.Prefix != w.Prefix || got.Total != w.Total || next != w.NextCursor || !slices.Equal(got.Entries, w.Entries) {
			t.Fatalf("%s: agent answered %+v, the Hub computes %+v", what, got, w)
		}
	}

	t.Run("PagesThroughADirectory", func(t *testing.T) {
		var names []string
		q := url.Values{"prefix": {root + "/logs"}, "limit": {"10"}}
		for pages := 0; ; pages++ {
			resp, page := getEntries(t, c, runID, q)
			if resp.Status != http.StatusOK {
				t.Fatalf("entries: %s", resp)
			}
			same("page "+q.Get("cursor"), page, want(restore.ListOptions{Prefix: root + "/logs", Limit: 10, Cursor: q.Get("cursor")}))
			for _, e := range page.Entries {
				names = append(names, e.Name)
			}
			if page.NextCursor == nil {
				if pages != 2 {
					t.Fatalf("%d children in pages of 10 took %d pages", len(names), pages+1)
				}
				break
			}
			q.Set("cursor", fmt.Sprint(*page.NextCursor))
		}
		// 25 app logs, two error logs, .hidden, and the directory old (first).
		if len(names) != 29 || names[0] != "old" || !slices.Contains(names, ".hidden") {
			t.Fatalf("children of logs: %v", names)
		}
	})

	t.Run("Filters", func(t *testing.T) {
		for _, tc := range []struct {
			q    url.Values
			opts restore.ListOptions
			want []string
		}{
			{url.Values{"prefix": {root + "/logs"}, "q": {"error"}}, restore.ListOptions{Prefix: root + "/logs", Q: "error"},
				[]string{"ERROR-1.log", "error-2.log"}},
			{url.Values{"prefix": {root + "/logs"}, "kind": {"dir"}}, restore.ListOptions{Prefix: root + "/logs", Kind: "dir"},
				[]string{"old"}},
			{url.Values{"prefix": {root}, "files_first": {"true"}}, restore.ListOptions{Prefix: root, FilesFirst: true},
				[]string{"README.md", "docs", "logs"}},
			{url.Values{"prefix": {root + "/logs"}, "q": {"hid"}, "hide_dotfiles": {"true"}},
				restore.ListOptions{Prefix: root + "/logs", Q: "hid", HideDotfiles: true}, nil},
		} {
			resp, page := getEntries(t, c, runID, tc.q)
			if resp.Status != http.StatusOK {
				t.Fatalf("%v: %s", tc.q, resp)
			}
			same(tc.q.Encode(), page, want(tc.opts))
			var got []string
			for _, e := range page.Entries {
				got = append(got, e.Name)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("%v: %v, want %v", tc.q, got, tc.want)
			}
		}
		// Paths lead back to the source: the picker's selection uses them.
		_, page := getEntries(t, c, runID, url.Values{"prefix": {root + "/docs"}})
		if len(page.Entries) != 1 || page.Entries[0].Path != root+"/docs/guide.md" || page.Entries[0].Kind != "file" || page.Entries[0].Size != 7 {
			t.Fatalf("docs: %+v", page.Entries)
		}
	})

	t.Run("CachedOnTheAgent", func(t *testing.T) {
		// The agent answers from its own browse index, built once in its own cache.
		if _, err := os.Stat(filepath.Join(rs.dataDir, "cache", "entries", runID, operations.IndexName)); err != nil {
			t.Fatalf("the agent keeps no browse index: %v", err)
		}
	})

	t.Run("SnapshotFilesGone", func(t *testing.T) {
		// The agent reads the target again for every page (size check), so a vanished index is
		// noticed: 404 snapshot_files_missing, as for the Hub's own snapshots.
		moved := index + ".moved"
		if err := os.Rename(index, moved); err != nil {
			t.Fatal(err)
		}
		resp, _ := getEntries(t, c, runID, url.Values{"prefix": {root}})
		if err := os.Rename(moved, index); err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusNotFound || resp.ErrorCode() != "snapshot_files_missing" {
			t.Fatalf("index gone from the agent's target: %s", resp)
		}
	})

	t.Run("DisconnectMidRequest", func(t *testing.T) {
		// The agent answers, but the connection dies with the answer on its way.
		opened := rs.proxy.linksOpened()
		rs.proxy.arm(armedFault{dir: toHub, typ: protocol.TypeEntriesListResult, fault: faultDrop})
		resp, _ := getEntries(t, c, runID, url.Values{"prefix": {root}})
		if resp.Status != http.StatusConflict || resp.ErrorCode() != "agent_offline" || errorReason(t, resp) != "disconnected" ||
			!strings.Contains(string(resp.Body), "disconnected before it answered") {
			t.Fatalf("agent gone mid-request: %s", resp)
		}
		waitFor(t, "agent reconnected", func() bool { return rs.proxy.linksOpened() > opened && rs.hub.Connected(rs.agentID) })
		resp, page := getEntries(t, c, runID, url.Values{"prefix": {root}})
		if resp.Status != http.StatusOK || page.Total != 3 {
			t.Fatalf("entries after the agent came back: %s", resp)
		}
	})

	t.Run("Offline", func(t *testing.T) {
		rs.stopAgent(t)
		resp, _ := getEntries(t, c, runID, url.Values{"prefix": {root}})
		if resp.Status != http.StatusConflict || resp.ErrorCode() != "agent_offline" || errorReason(t, resp) != "not_connected" {
			t.Fatalf("agent offline: %s", resp)
		}
	})
}

// TestVerifyOnAgent: POST /api/runs/{id}/verify of a snapshot in an agent's directory runs on the
// agent as an operation of that agent: events, progress and a verify summary like the Hub's,
// scratch space removed; a corrupted part fails it naming the part; an agent that is not
// connected is refused before anything starts.
func TestVerifyOnAgent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := newRestoreSetup(t, false)
	_, dst, jobID, runID := rs.backupNewTree(t, 2<<20, `{"type":"none"}`)
	c := rs.api(t)

	verify := func() storage.Operation {
		t.Helper()
		st, body := c.Post(t, "/api/runs/"+runID+"/verify", nil)
		if st != http.StatusOK {
			t.Fatalf("verify: %d %v", st, body)
		}
		return rs.waitOp(t, body["op_id"].(string))
	}

	op := verify()
	var res restore.VerifyResult
	if op.Status != storage.OperationSuccess || op.Kind != storage.OperationVerify || op.NodeID != rs.agentID ||
		json.Unmarshal([]byte(deref(op.SummaryJSON)), &res) != nil || !res.OK || res.FilesTotal < 120 || res.FilesFailed != 0 {
		t.Fatalf("verify on the agent: %+v %s %s", op, deref(op.Error), deref(op.SummaryJSON))
	}
	if got := strings.Join(rs.opEvents(t, op.ID), ","); got != "start,manifest,verify,complete" {
		t.Fatalf("events %s", got)
	}
	if op.ProgressJSON == nil || !strings.Contains(*op.ProgressJSON, `"kind":"verify"`) {
		t.Fatalf("the agent's progress did not reach the operation: %s", deref(op.ProgressJSON))
	}
	// The operation is finished before its task is closed (two writes, in that order), so the
	// task may still be open for a moment after the operation reads as done.
	waitFor(t, "verify task completed", func() bool {
		tk, err := rs.db.Reader().GetAgentTask(ctx, op.ID)
		return err == nil && tk.CompletedAt != nil
	})
	if tk, err := rs.db.Reader().GetAgentTask(ctx, op.ID); err != nil || tk.Kind != storage.AgentTaskVerify || tk.CompletedAt == nil {
		t.Fatalf("verify task %+v %v", tk, err)
	}
	waitFor(t, "result acknowledged on the agent", func() bool { return resultAckedOnAgent(rs.dataDir, op.ID) })
	if es, _ := os.ReadDir(filepath.Join(rs.dataDir, "operations")); len(es) != 0 {
		t.Fatalf("the agent left its verify scratch space: %v", es)
	}

	parts, _ := filepath.Glob(filepath.Join(dst, jobID, runID, "payload.part*"))
	if len(parts) < 2 {
		t.Fatalf("want a snapshot of several parts, got %v", parts)
	}
	part := parts[1]
	f, err := os.OpenFile(part, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, 1000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	op = verify()
	name := filepath.Base(part)
	if op.Status != storage.OperationFailed || !strings.HasPrefix(deref(op.Error), restore.CodePart+": part "+name) ||
		!strings.Contains(deref(op.Error), "hash_mismatch") {
		t.Fatalf("verify of a corrupted part: %s %q", op.Status, deref(op.Error))
	}
	evs := c.Do(t, http.MethodGet, "/api/operations/"+op.ID+"/events", nil).JSONArray(t)
	last := evs[len(evs)-1].(map[string]any)
	if last["kind"] != "failed" || last["level"] != "error" || !strings.Contains(last["message"].(string), name) {
		t.Fatalf("failed event: %v", last)
	}
	if es, _ := os.ReadDir(filepath.Join(rs.dataDir, "operations")); len(es) != 0 {
		t.Fatalf("the agent left its verify scratch space after a failure: %v", es)
	}

	rs.stopAgent(t)
	resp := c.Do(t, http.MethodPost, "/api/runs/"+runID+"/verify", nil)
	if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "agent_not_connected" {
		t.Fatalf("verify with the agent offline: %s", resp)
	}
	if ops, _ := rs.db.Reader().ListOperationsBySubject(ctx, "run", runID, 10); len(ops) != 2 {
		t.Fatalf("a refused verify left an operation: %d operations", len(ops))
	}
}

// TestVerifyOnAgentCanceled: a verify canceled while it runs on the agent ends canceled, once,
// and runs once.
func TestVerifyOnAgentCanceled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := newRestoreSetup(t, true)
	_, _, _, runID := rs.backupNewTree(t, 1<<20, `{"type":"none"}`)
	op, err := rs.ops.StartVerify(ctx, runID, 1)
	if err != nil {
		t.Fatal(err)
	}
	rs.waitHeld(t, op.ID)
	if _, err := rs.ops.Cancel(ctx, op.ID, 1, "enough"); err != nil {
		t.Fatal(err)
	}
	got := rs.waitOp(t, op.ID)
	if got.Status != storage.OperationCanceled {
		t.Fatalf("canceled verify ended %s: %s", got.Status, deref(got.Error))
	}
	waitFor(t, "result acknowledged on the agent", func() bool { return resultAckedOnAgent(rs.dataDir, op.ID) })
	kinds := rs.opEvents(t, op.ID)
	if count(kinds, "cancel_requested") != 1 || count(kinds, "canceled") != 1 || count(kinds, "complete") != 0 {
		t.Fatalf("events %v", kinds)
	}
	es, _ := os.ReadDir(rs.markers)
	n := 0
	for _, e := range es {
		if strings.HasPrefix(e.Name(), "verify-"+op.ID+"-") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("verify executed %d times", n)
	}
	if es, _ := os.ReadDir(filepath.Join(rs.dataDir, "operations")); len(es) != 0 {
		t.Fatalf("the agent left its verify scratch space: %v", es)
	}
}

// TestRestoreSelectionOnAgent: a file picked through the agent's entries is restored on the
// agent, and only that file.
func TestRestoreSelectionOnAgent(t *testing.T) {
	t.Parallel()
	rs := newRestoreSetup(t, false)
	src, dst := filepath.Join(t.TempDir(), "src"), t.TempDir()
	pickerTree(t, src)
	_, runID := rs.backupOnAgent(t, src, dst, `{"type":"none"}`)
	c := rs.api(t)

	root := strings.TrimPrefix(src, "/")
	resp, page := getEntries(t, c, runID, url.Values{"prefix": {root + "/logs"}, "q": {"app-07"}})
	if resp.Status != http.StatusOK || len(page.Entries) != 1 {
		t.Fatalf("pick a file: %s", resp)
	}
	picked := page.Entries[0].Path
	into := filepath.Join(t.TempDir(), "restored")
	st, body := c.Post(t, "/api/runs/"+runID+"/restore", map[string]any{
		"destination": map[string]any{"type": "local_fs", "node_id": rs.agentID, "directory": into},
		"selection":   map[string]any{"files": []string{picked}}})
	if st != http.StatusOK {
		t.Fatalf("restore: %d %v", st, body)
	}
	op := rs.waitOp(t, body["op_id"].(string))
	if op.Status != storage.OperationSuccess || op.NodeID != rs.agentID {
		t.Fatalf("restore of a selection on the agent: %s %s", op.Status, deref(op.Error))
	}
	var files []string
	err := filepath.WalkDir(into, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(into, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(files, []string{picked}) {
		t.Fatalf("restored %v, want only %s", files, picked)
	}
	if testtool.FileHash(t, filepath.Join(into, filepath.FromSlash(picked))) != testtool.FileHash(t, filepath.Join(src, "logs", "app-07.log")) {
		t.Fatal("the restored file's bytes differ from the source's")
	}
}

// TestOlderAgentIsNotAsked: an agent whose hello does not list entries_list and verify (an older
// one) is not sent them, so nothing waits for an answer that never comes: the picker answers 409
// agent_unsupported and verify is refused with 400 agent_unsupported, leaving no operation.
func TestOlderAgentIsNotAsked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := newRestoreSetup(t, false)
	src, dst := filepath.Join(t.TempDir(), "src"), t.TempDir()
	pickerTree(t, src)
	_, runID := rs.backupOnAgent(t, src, dst, `{"type":"none"}`)
	c := rs.api(t)

	rs.stopAgent(t)
	rs.child = startRealChild(t, rs.proxy.url(), "", rs.dataDir, rs.markers, false, "CHILD_OLD=1")
	waitFor(t, "older agent connected and said hello", func() bool {
		ok, err := rs.hub.Supports(ctx, rs.agentID, protocol.ControlEntriesList)
		return err == nil && !ok && rs.hub.Connected(rs.agentID)
	})
	resp, _ := getEntries(t, c, runID, url.Values{"prefix": {strings.TrimPrefix(src, "/")}})
	if resp.Status != http.StatusConflict || resp.ErrorCode() != "agent_unsupported" {
		t.Fatalf("entries from an older agent: %s", resp)
	}
	resp = c.Do(t, http.MethodPost, "/api/runs/"+runID+"/verify", nil)
	if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "agent_unsupported" {
		t.Fatalf("verify on an older agent: %s", resp)
	}
	if ops, _ := rs.db.Reader().ListOperationsBySubject(ctx, "run", runID, 10); len(ops) != 0 {
		t.Fatalf("a refused verify left %d operations", len(ops))
	}
}

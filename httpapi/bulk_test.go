package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/engine/bulk"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// bulkHub is an API under test with agent sockets (config and secrets snapshots as the Hub
// sends them), the run queue (for the job routes) and the bulk operations loop, which runs only
// when the test starts it.
type bulkHub struct {
	*apitest.Hub
	sock *agentsock.Hub
	loop *bulk.Loop
	c    *apitest.Client
}

func startBulkHub(t *testing.T, runLoop bool) *bulkHub {
	t.Helper()
	bh := &bulkHub{}
	bh.Hub = apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		bh.sock = agentsock.New(agentsock.Config{DB: cfg.DB, Clock: cfg.Clock, Logger: cfg.Logger,
			Snapshots: agentsock.StoreSnapshots{DB: cfg.DB, Store: cfg.Secrets, Clock: cfg.Clock}})
		bh.loop = bulk.New(bulk.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger})
		cfg.Agents, cfg.Bulk = bh.sock, bh.loop
		cfg.Runs = runs.New(runs.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger})
		cfg.OnJobChanged = func(ctx context.Context, _ string, agents []string) {
			for _, id := range agents {
				_, _ = bh.sock.SyncConfig(ctx, id)
			}
		}
	}))
	t.Cleanup(bh.sock.Close)
	if runLoop {
		runBulkLoop(t, bh.loop)
	}
	bh.c = bh.Login(t)
	return bh
}

// runBulkLoop runs l until the test ends (before the database closes).
func runBulkLoop(t *testing.T, l *bulk.Loop) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bulk loop: %v", err)
		}
	})
}

type bulkItemOut struct {
	AgentID       string  `json:"agent_id"`
	AgentName     *string `json:"agent_name"`
	Status        string  `json:"status"`
	Attempts      int     `json:"attempts"`
	LastErrorKind *string `json:"last_error_kind"`
	LastError     *string `json:"last_error"`
}

type bulkOut struct {
	ID, Kind, Status                                  string
	Selector, Payload                                 json.RawMessage
	CreatedByUserID                                   *int64 `json:"created_by_user_id"`
	EndedAt                                           *int64 `json:"ended_at"`
	Total, Queued, Running, Success, Failed, Canceled int
	Items                                             []bulkItemOut
}

func (bo bulkOut) item(t *testing.T, agent string) bulkItemOut {
	t.Helper()
	for _, it := range bo.Items {
		if it.AgentID == agent {
			return it
		}
	}
	t.Fatalf("no item for agent %s in %+v", agent, bo)
	return bulkItemOut{}
}

func (it bulkItemOut) String() string {
	s := fmt.Sprintf("%s/%d", it.Status, it.Attempts)
	if it.LastErrorKind != nil {
		s += "/" + *it.LastErrorKind
	}
	return s
}

func (bh *bulkHub) create(t *testing.T, c *apitest.Client, body map[string]any) string {
	t.Helper()
	resp := c.Do(t, "POST", "/api/bulk-operations", body)
	var out struct {
		OpID string `json:"op_id"`
	}
	resp.Decode(t, &out)
	if resp.Status != http.StatusOK || out.OpID == "" {
		t.Fatalf("create %v: %s", body, resp)
	}
	return out.OpID
}

func (bh *bulkHub) get(t *testing.T, id string) bulkOut {
	t.Helper()
	resp := bh.c.Do(t, "GET", "/api/bulk-operations/"+id, nil)
	var out bulkOut
	resp.Decode(t, &out)
	if resp.Status != http.StatusOK {
		t.Fatalf("get %s: %s", id, resp)
	}
	return out
}

// wait polls the operation until no item is queued or running.
func (bh *bulkHub) wait(t *testing.T, id string) bulkOut {
	t.Helper()
	var out bulkOut
	eventually(t, "bulk operation "+id+" to end", func() bool {
		out = bh.get(t, id)
		return out.EndedAt != nil && out.Queued == 0 && out.Running == 0
	})
	return out
}

func (bh *bulkHub) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := bh.DB.Reader().QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// connectAgent enrolls a real agent that keeps (and acknowledges) the config snapshots it is
// sent, runs it until the test ends, and returns its id.
func (bh *bulkHub) connectAgent(t *testing.T, name string) string {
	t.Helper()
	status, tok := bh.c.Post(t, "/api/agents/enrollment-tokens", map[string]any{"ttl_seconds": 600, "remaining_uses": 1})
	if status != http.StatusOK {
		t.Fatalf("create token: %d %v", status, tok)
	}
	dir := t.TempDir()
	managed, err := client.OpenManaged(dir, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := client.New(ctx, client.Options{HubURL: bh.URL, EnrollToken: tok["token"].(string), Name: name, DataDir: dir,
		Heartbeat: time.Second, Logger: zerolog.Nop(), Managed: managed})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	eventually(t, "agent connected", func() bool { return bh.sock.Connected(a.ID()) })
	return a.ID()
}

// addRevokedAgent stores an agent that was revoked: it exists, so selectors may name it.
func (bh *bulkHub) addRevokedAgent(t *testing.T, id string) {
	t.Helper()
	now := bh.Clock.Now().Unix()
	if err := bh.DB.Writer().InsertAgent(context.Background(), storage.Agent{ID: id, KeyHash: []byte("k-" + id),
		CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := bh.DB.Writer().RevokeAgent(context.Background(), id, now); err != nil {
		t.Fatal(err)
	}
}

func TestBulkOperationsWithAgents(t *testing.T) {
	t.Parallel()
	bh := startBulkHub(t, true)
	c := bh.c
	id1, id2 := bh.connectAgent(t, "nas"), bh.connectAgent(t, "pi")
	bh.addRevokedAgent(t, "gone")
	for id, labels := range map[string][]string{id1: {"prod"}, id2: {"prod", "eu"}, "gone": {"prod"}} {
		if resp := c.Do(t, "PUT", "/api/agents/"+id+"/labels", map[string]any{"labels": labels}); resp.Status != http.StatusNoContent {
			t.Fatalf("labels: %s", resp)
		}
	}
	labelsOf := func(id string) string {
		_, body := c.Get(t, "/api/agents/"+id)
		return fmt.Sprint(body["labels"])
	}

	t.Run("LabelsBySelector", func(t *testing.T) {
		op := bh.create(t, c, map[string]any{"kind": "agent_labels_add",
			"selector": map[string]any{"labels": []string{"prod", "EU"}, "labels_mode": "and"},
			"payload":  map[string]any{"labels": []string{"Tier-1"}}})
		out := bh.wait(t, op)
		if out.Status != "done" || out.Total != 1 || out.item(t, id2).String() != "success/1" || *out.item(t, id2).AgentName != "pi" ||
			string(out.Selector) != `{"labels":["eu","prod"],"labels_mode":"and"}` || string(out.Payload) != `{"labels":["tier-1"]}` ||
			out.CreatedByUserID == nil {
			t.Fatalf("and selector: %+v", out)
		}
		if labelsOf(id2) != "[eu prod tier-1]" || labelsOf(id1) != "[prod]" {
			t.Fatalf("labels after add: %s %s", labelsOf(id1), labelsOf(id2))
		}
		// or: any label; the revoked agent carries prod too, and its labels may still be edited,
		// as through the single-agent route.
		op = bh.create(t, c, map[string]any{"kind": "agent_labels_remove",
			"selector": map[string]any{"labels": []string{"tier-1", "nope"}, "labels_mode": "or"},
			"payload":  map[string]any{"labels": []string{"tier-1"}}})
		if out := bh.wait(t, op); out.Success != 1 || labelsOf(id2) != "[eu prod]" {
			t.Fatalf("or selector: %+v, labels %s", out, labelsOf(id2))
		}
		var list []struct {
			ID, Kind, Status string
			Total, Success   int
		}
		c.Do(t, "GET", "/api/bulk-operations", nil).Decode(t, &list)
		if len(list) < 2 || list[0].ID != op || list[0].Kind != "agent_labels_remove" || list[0].Status != "done" || list[0].Success != 1 {
			t.Fatalf("list: %+v", list)
		}
	})

	t.Run("SyncFailsAloneAndRetryRerunsOnlyIt", func(t *testing.T) {
		op := bh.create(t, c, map[string]any{"kind": "sync_config_now",
			"selector": map[string]any{"node_ids": []string{id2, "gone", id1, id1}}})
		out := bh.wait(t, op)
		gone := out.item(t, "gone")
		if out.Status != "done" || out.Total != 3 || out.Success != 2 || gone.String() != "failed/1/agent_revoked" ||
			out.item(t, id1).String() != "success/1" {
			t.Fatalf("sync: %+v", out)
		}
		// The agents got their config: what the Hub wants is what they applied.
		for _, id := range []string{id1, id2} {
			eventually(t, "agent "+id+" applies its config", func() bool {
				_, body := c.Get(t, "/api/agents/"+id)
				return body["desired_config_snapshot_id"] != nil && body["desired_config_snapshot_id"] == body["applied_config_snapshot_id"]
			})
		}
		if resp := c.Do(t, "POST", "/api/bulk-operations/"+op+"/retry-failed", nil); resp.Status != http.StatusNoContent {
			t.Fatalf("retry: %s", resp)
		}
		out = bh.wait(t, op)
		if out.item(t, "gone").String() != "failed/2/agent_revoked" || out.item(t, id1).String() != "success/1" || out.item(t, id2).String() != "success/1" {
			t.Fatalf("after retry: %+v", out)
		}
	})

	t.Run("DistributeWebDAVCredential", func(t *testing.T) {
		if resp := c.Do(t, "PUT", "/api/secrets/webdav/nas", map[string]any{"username": "u", "password": "p"}); resp.Status != http.StatusNoContent {
			t.Fatalf("hub secret: %s", resp)
		}
		preview := func() string {
			var pv struct {
				SecretName string `json:"secret_name"`
				Overwrite  bool
				Items      []struct {
					AgentID string `json:"agent_id"`
					Action  string
					Note    *string
				}
			}
			resp := c.Do(t, "POST", "/api/bulk-operations/preview", map[string]any{"kind": "webdav_secret_distribute",
				"selector": map[string]any{"node_ids": []string{id1, id2}}, "payload": map[string]any{"name": "nas"}})
			if resp.Status != http.StatusOK {
				t.Fatalf("preview: %s", resp)
			}
			resp.Decode(t, &pv)
			var out []string
			for _, it := range pv.Items {
				s := it.Action
				if it.Note != nil {
					s += ":" + *it.Note
				}
				out = append(out, strings.Replace(it.AgentID, id1, "a1", 1)+"="+s)
			}
			sort.Strings(out)
			return pv.SecretName + fmt.Sprint(pv.Overwrite) + fmt.Sprint(out)
		}
		if got := preview(); !strings.Contains(got, "a1=update") || bh.count(t, `SELECT COUNT(*) FROM secrets WHERE node_id != 'hub'`) != 0 ||
			bh.count(t, `SELECT COUNT(*) FROM bulk_operations WHERE kind = 'webdav_secret_distribute'`) != 0 {
			t.Fatalf("preview before: %s (or it changed something)", got)
		}
		op := bh.create(t, c, map[string]any{"kind": "webdav_secret_distribute",
			"selector": map[string]any{"node_ids": []string{id1}}, "payload": map[string]any{"name": "nas"}})
		if out := bh.wait(t, op); out.item(t, id1).String() != "success/1" || string(out.Payload) != `{"name":"nas","overwrite":false}` {
			t.Fatalf("distribute: %+v", out)
		}
		if got := preview(); !strings.Contains(got, "a1=skip:already exists") || !strings.HasPrefix(got, "nasfalse") {
			t.Fatalf("preview after: %s", got)
		}
		resp := c.Do(t, "GET", "/api/nodes/"+id1+"/secrets/webdav/nas", nil)
		if resp.Status != http.StatusOK || resp.JSON(t)["username"] != "u" {
			t.Fatalf("agent's copy: %s", resp)
		}
		// Again without overwrite: skipped, noted.
		op = bh.create(t, c, map[string]any{"kind": "webdav_secret_distribute",
			"selector": map[string]any{"node_ids": []string{id1}}, "payload": map[string]any{"name": "nas"}})
		if out := bh.wait(t, op); out.item(t, id1).String() != "success/1/skipped" {
			t.Fatalf("second distribute: %+v", out)
		}
	})

	t.Run("DeployJob", func(t *testing.T) {
		spec := `{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"webdav","base_url":"https://dav.example/b","secret_name":"nas"}}`
		st, src := c.Post(t, "/api/jobs", map[string]any{"name": "docs", "schedule": "0 3 * * *", "overlap_policy": "queue",
			"spec": json.RawMessage(spec)})
		if st != http.StatusOK {
			t.Fatalf("source job: %d %v", st, src)
		}
		srcID := src["id"].(string)
		// The job page offers "deploy to agents" to an admin only.
		for who, want := range map[*apitest.Client]bool{c: true, bh.AddUser(t, c, "deploy-op", httpapi.RoleOperator): false} {
			_, ws := who.Get(t, "/api/jobs/"+srcID+"/workspace")
			if caps, _ := ws["capabilities"].(map[string]any); caps == nil || caps["can_deploy"] != want {
				t.Fatalf("workspace capabilities %v, want can_deploy %v", ws["capabilities"], want)
			}
		}
		sel := map[string]any{"node_ids": []string{id1, id2}}
		payload := map[string]any{"source_job_id": srcID}

		// Preview: a1 has the credential, a2 does not; nothing is created.
		var pv struct {
			Kind, SourceJobID, NameTemplate string
			Items                           []struct {
				AgentID, PlannedName string
				Valid                bool
				Error                *string
			}
		}
		resp := c.Do(t, "POST", "/api/bulk-operations/preview", map[string]any{"kind": "job_deploy", "selector": sel, "payload": payload})
		resp.Decode(t, &pv)
		if err := json.Unmarshal(resp.Body, &struct {
			SourceJobID  *string `json:"source_job_id"`
			NameTemplate *string `json:"name_template"`
		}{&pv.SourceJobID, &pv.NameTemplate}); err != nil {
			t.Fatal(err)
		}
		var planned map[string]any
		_ = json.Unmarshal(resp.Body, &planned)
		items, _ := planned["items"].([]any)
		if resp.Status != http.StatusOK || pv.Kind != "job_deploy" || pv.SourceJobID != srcID || pv.NameTemplate != "{name} ({node})" || len(items) != 2 {
			t.Fatalf("preview: %s", resp)
		}
		byAgent := map[string]map[string]any{}
		for _, it := range items {
			m := it.(map[string]any)
			byAgent[m["agent_id"].(string)] = m
		}
		if p := byAgent[id1]; p["planned_name"] != "docs ("+id1+")" || p["valid"] != true || p["error"] != nil {
			t.Fatalf("preview a1: %v", p)
		}
		if p := byAgent[id2]; p["valid"] != false || !strings.Contains(fmt.Sprint(p["error"]), "no webdav secret") {
			t.Fatalf("preview a2: %v", p)
		}
		if n := bh.count(t, `SELECT COUNT(*) FROM jobs`); n != 1 {
			t.Fatalf("preview created jobs: %d", n)
		}

		op := bh.create(t, c, map[string]any{"kind": "job_deploy", "selector": sel, "payload": payload})
		out := bh.wait(t, op)
		if out.item(t, id1).String() != "success/1" || out.item(t, id2).String() != "failed/1/validation_failed" ||
			!strings.Contains(*out.item(t, id2).LastError, "no webdav secret") {
			t.Fatalf("deploy: %+v", out)
		}
		// a2 gets the credential through the single-agent route; retrying re-runs a2 alone.
		if resp := c.Do(t, "PUT", "/api/nodes/"+id2+"/secrets/webdav/nas", map[string]any{"username": "u2", "password": "p2"}); resp.Status != http.StatusNoContent {
			t.Fatalf("a2 secret: %s", resp)
		}
		if resp := c.Do(t, "POST", "/api/bulk-operations/"+op+"/retry-failed", nil); resp.Status != http.StatusNoContent {
			t.Fatalf("retry: %s", resp)
		}
		out = bh.wait(t, op)
		if out.item(t, id1).String() != "success/1" || out.item(t, id2).String() != "success/2" || out.Status != "done" {
			t.Fatalf("after retry: %+v", out)
		}
		// One clone per agent, bound to it, with the source's schedule; each runs once for its agent.
		for _, id := range []string{id1, id2} {
			var page struct {
				Items []struct {
					ID, Name string
					AgentID  *string `json:"agent_id"`
					Schedule *string
				}
			}
			c.Do(t, "GET", "/api/jobs?scope=agent:"+id, nil).Decode(t, &page)
			if len(page.Items) != 1 || page.Items[0].Name != "docs ("+id+")" || *page.Items[0].AgentID != id || *page.Items[0].Schedule != "0 3 * * *" {
				t.Fatalf("jobs of %s: %+v", id, page)
			}
			st, run := c.Post(t, "/api/jobs/"+page.Items[0].ID+"/run", nil)
			if st != http.StatusOK || run["status"] != "queued" {
				t.Fatalf("run clone on %s: %d %v", id, st, run)
			}
		}
		if n := bh.count(t, `SELECT COUNT(DISTINCT j.agent_id) FROM runs r JOIN jobs j ON j.id = r.job_id WHERE j.agent_id IS NOT NULL`); n != 2 {
			t.Fatalf("runs on %d agents, want 2", n)
		}
		// The agents were sent their new jobs.
		eventually(t, "agents apply the config with their clone", func() bool {
			for _, id := range []string{id1, id2} {
				_, body := c.Get(t, "/api/agents/"+id)
				if body["desired_config_snapshot_id"] == nil || body["desired_config_snapshot_id"] != body["applied_config_snapshot_id"] {
					return false
				}
			}
			return true
		})
		// Deploying again names the new clone apart from the first.
		resp = c.Do(t, "POST", "/api/bulk-operations/preview", map[string]any{"kind": "job_deploy",
			"selector": map[string]any{"node_ids": []string{id1}}, "payload": payload})
		if body := resp.JSON(t); !strings.Contains(fmt.Sprint(body["items"]), "planned_name:docs ("+id1+") #2") {
			t.Fatalf("second preview: %s", resp)
		}
	})
}

func TestBulkOperationsRefuseBadInput(t *testing.T) {
	t.Parallel()
	bh := startBulkHub(t, true)
	c := bh.c
	bh.addRevokedAgent(t, "gone")
	if resp := c.Do(t, "PUT", "/api/agents/gone/labels", map[string]any{"labels": []string{"prod"}}); resp.Status != http.StatusNoContent {
		t.Fatalf("labels: %s", resp)
	}
	labels := map[string]any{"labels": []string{"x"}}
	sel := map[string]any{"node_ids": []string{"gone"}}
	for _, tc := range []struct {
		name string
		body map[string]any
		code string
	}{
		{"UnknownKind", map[string]any{"kind": "reboot", "selector": sel}, "invalid_kind"},
		{"NoSelector", map[string]any{"kind": "sync_config_now"}, "invalid_selector"},
		{"EmptySelector", map[string]any{"kind": "sync_config_now", "selector": map[string]any{"node_ids": []string{" "}, "labels": []string{}}}, "invalid_selector"},
		{"UnknownAgent", map[string]any{"kind": "sync_config_now", "selector": map[string]any{"node_ids": []string{"gone", "nope"}}}, "invalid_selector"},
		{"TooManyNodeIDs", map[string]any{"kind": "sync_config_now", "selector": map[string]any{"node_ids": manyIDs(1001)}}, "invalid_selector"},
		{"SelectorMatchesNothing", map[string]any{"kind": "sync_config_now", "selector": map[string]any{"labels": []string{"prod", "eu"}}}, "invalid_selector"},
		{"BadLabelsMode", map[string]any{"kind": "sync_config_now", "selector": map[string]any{"labels": []string{"prod"}, "labels_mode": "xor"}}, "invalid_labels_mode"},
		{"BadSelectorLabel", map[string]any{"kind": "sync_config_now", "selector": map[string]any{"labels": []string{"has space"}}}, "invalid_label"},
		{"NoPayload", map[string]any{"kind": "agent_labels_add", "selector": sel}, "invalid_payload"},
		{"NoLabels", map[string]any{"kind": "agent_labels_add", "selector": sel, "payload": map[string]any{"labels": []string{}}}, "invalid_payload"},
		{"BadLabel", map[string]any{"kind": "agent_labels_add", "selector": sel, "payload": map[string]any{"labels": []string{"Ü"}}}, "invalid_label"},
		{"PayloadUnknownField", map[string]any{"kind": "agent_labels_add", "selector": sel, "payload": map[string]any{"labels": []string{"x"}, "force": true}}, "invalid_payload"},
		{"PayloadWrongType", map[string]any{"kind": "agent_labels_add", "selector": sel, "payload": []string{"x"}}, "invalid_payload"},
		{"DeployUnknownSource", map[string]any{"kind": "job_deploy", "selector": sel, "payload": map[string]any{"source_job_id": "nope"}}, "invalid_payload"},
		{"DeployNoSource", map[string]any{"kind": "job_deploy", "selector": sel, "payload": map[string]any{"source_job_id": " "}}, "invalid_payload"},
		{"DistributeUnknownSecret", map[string]any{"kind": "webdav_secret_distribute", "selector": sel, "payload": map[string]any{"name": "nope"}}, "invalid_payload"},
		{"UnknownTopLevelField", map[string]any{"kind": "sync_config_now", "selector": sel, "dry_run": true}, "invalid_json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/api/bulk-operations", "/api/bulk-operations/preview"} {
				resp := c.Do(t, "POST", path, tc.body)
				if resp.Status != http.StatusBadRequest || resp.ErrorCode() != tc.code || resp.JSON(t)["message"] == "" {
					t.Fatalf("%s: %s, want 400 %s", path, resp, tc.code)
				}
			}
		})
	}
	t.Run("PreviewOfOtherKinds", func(t *testing.T) {
		resp := c.Do(t, "POST", "/api/bulk-operations/preview", map[string]any{"kind": "agent_labels_add", "selector": sel, "payload": labels})
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "preview_not_supported" {
			t.Fatalf("preview labels: %s", resp)
		}
	})
	t.Run("UnknownOperation", func(t *testing.T) {
		for _, r := range []struct{ method, path string }{{"GET", ""}, {"POST", "/cancel"}, {"POST", "/retry-failed"}} {
			if resp := c.Do(t, r.method, "/api/bulk-operations/nope"+r.path, nil); resp.Status != http.StatusNotFound || resp.ErrorCode() != "bulk_operation_not_found" {
				t.Fatalf("%s %s: %s", r.method, r.path, resp)
			}
		}
	})
	if n := bh.count(t, `SELECT COUNT(*) FROM bulk_operations`); n != 0 {
		t.Fatalf("refused requests created %d operations", n)
	}
}

func TestBulkOperationsRoles(t *testing.T) {
	t.Parallel()
	bh := startBulkHub(t, false)
	bh.addRevokedAgent(t, "gone")
	viewer := bh.AddUser(t, bh.c, "vera", httpapi.RoleViewer)
	operator := bh.AddUser(t, bh.c, "otto", httpapi.RoleOperator)
	sel := map[string]any{"node_ids": []string{"gone"}}
	sync := map[string]any{"kind": "sync_config_now", "selector": sel}
	labels := map[string]any{"kind": "agent_labels_add", "selector": sel, "payload": map[string]any{"labels": []string{"x"}}}
	for _, tc := range []struct {
		who  *apitest.Client
		body map[string]any
		want int
	}{
		{viewer, sync, http.StatusForbidden},
		{viewer, labels, http.StatusForbidden},
		{operator, labels, http.StatusForbidden},
		{operator, sync, http.StatusOK},
	} {
		if resp := tc.who.Do(t, "POST", "/api/bulk-operations", tc.body); resp.Status != tc.want {
			t.Fatalf("create %v: %s, want %d", tc.body["kind"], resp, tc.want)
		}
	}
	if n := bh.count(t, `SELECT COUNT(*) FROM bulk_operations`); n != 1 {
		t.Fatalf("%d operations, want the operator's one", n)
	}
	op := bh.create(t, bh.c, labels)
	if resp := viewer.Do(t, "GET", "/api/bulk-operations/"+op, nil); resp.Status != http.StatusOK {
		t.Fatalf("viewer reads: %s", resp)
	}
	for _, who := range []*apitest.Client{viewer, operator} {
		if resp := who.Do(t, "POST", "/api/bulk-operations/"+op+"/retry-failed", nil); resp.Status != http.StatusForbidden {
			t.Fatalf("retry of an admin's kind: %s", resp)
		}
	}
	if resp := viewer.Do(t, "POST", "/api/bulk-operations/"+op+"/cancel", nil); resp.Status != http.StatusForbidden {
		t.Fatalf("viewer cancels: %s", resp)
	}
}

// Cancel and restart, with the loop stopped: what was queued stays queued until a loop runs.
func TestBulkOperationsCancelAndRestart(t *testing.T) {
	t.Parallel()
	bh := startBulkHub(t, false)
	c := bh.c
	for _, id := range []string{"a", "b", "c"} {
		bh.addRevokedAgent(t, id)
	}
	all := map[string]any{"node_ids": []string{"a", "b", "c"}}
	addX := map[string]any{"kind": "agent_labels_add", "selector": all, "payload": map[string]any{"labels": []string{"x"}}}

	canceled := bh.create(t, c, addX)
	if resp := c.Do(t, "POST", "/api/bulk-operations/"+canceled+"/cancel", nil); resp.Status != http.StatusNoContent {
		t.Fatalf("cancel: %s", resp)
	}
	if out := bh.get(t, canceled); out.Status != "canceled" || out.Canceled != 3 || out.EndedAt == nil {
		t.Fatalf("canceled: %+v", out)
	}
	if resp := c.Do(t, "POST", "/api/bulk-operations/"+canceled+"/retry-failed", nil); resp.Status != http.StatusBadRequest || resp.ErrorCode() != "cannot_retry" {
		t.Fatalf("retry canceled: %s", resp)
	}

	// A Hub stopped while b was running: b stays running in the database.
	op := bh.create(t, c, addX)
	if _, err := bh.DB.Writer().Exec(context.Background(), `UPDATE bulk_operation_items SET status = 'running', attempts = 1
		WHERE op_id = ? AND agent_id = 'b'`, op); err != nil {
		t.Fatal(err)
	}
	if out := bh.get(t, op); out.Queued != 2 || out.Running != 1 {
		t.Fatalf("before restart: %+v", out)
	}
	// The next Hub: a fresh loop on the same database, its kinds registered by a fresh API.
	cfg := bh.Config
	loop := bulk.New(bulk.Config{DB: bh.DB, Clock: bh.Clock, Log: cfg.Logger})
	cfg.Bulk = loop
	httpapi.New(cfg)
	runBulkLoop(t, loop)
	out := bh.wait(t, op)
	if out.Status != "done" || out.Success != 3 || out.item(t, "b").String() != "success/2" || out.item(t, "a").String() != "success/1" {
		t.Fatalf("after restart: %+v", out)
	}
	if out := bh.get(t, canceled); out.Canceled != 3 || out.Status != "canceled" {
		t.Fatalf("the canceled operation ran: %+v", out)
	}
	for _, id := range []string{"a", "b", "c"} {
		if n := bh.count(t, `SELECT COUNT(*) FROM agent_labels WHERE agent_id = ? AND label = 'x'`, id); n != 1 {
			t.Fatalf("agent %s lacks label x", id)
		}
	}
}

// manyIDs is n distinct agent ids, none of which exists.
func manyIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("agent-%d", i)
	}
	return out
}

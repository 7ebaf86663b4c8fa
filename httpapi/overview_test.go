package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

type ccItem struct {
	ID          string  `json:"id"`
	Kind        string  `json:"kind"`
	Severity    string  `json:"severity"`
	Title       string  `json:"title"`
	Link        string  `json:"link"`
	At          int64   `json:"at"`
	JobID       *string `json:"job_id"`
	RunID       *string `json:"run_id"`
	AgentID     *string `json:"agent_id"`
	Destination *string `json:"destination"`
	OpID        *string `json:"op_id"`
	Count       *int64  `json:"count"`
}

type ccJSON struct {
	WindowDays int      `json:"window_days"`
	Items      []ccItem `json:"items"`
	Counts     struct {
		Total, Critical, Warning, Info int
		ByKind                         map[string]int `json:"by_kind"`
	} `json:"counts"`
}

const (
	hubWebDAVSpec   = `{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"webdav","base_url":"https://dav.example/b","secret_name":"nas"}}`
	agentWebDAVSpec = `{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"webdav","base_url":"https://dav.example/b","secret_name":"offsite"}}`
	localSpec       = `{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"local_dir","base_dir":"/bk"}}`
	secretValue     = "hunter2-never-shown"
)

type ccBundle struct {
	*dashBundle
	now time.Time
}

// putSecret stores a credential in the bundle's Hub.
func (b *ccBundle) putSecret(t *testing.T, node, kind, name, payload string) {
	t.Helper()
	if err := b.hub.Secrets.Put(context.Background(), node, kind, name, []byte(payload)); err != nil {
		t.Fatal(err)
	}
}

func setupCommandCenter(t *testing.T) *ccBundle {
	t.Helper()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	hub := apitest.Start(t, apitest.WithClock(clock.NewFake(now)))
	return &ccBundle{dashBundle: &dashBundle{hub: hub, c: hub.Login(t)}, now: now}
}

func (b *ccBundle) jobOn(t *testing.T, id, name string, agent *string, spec string) {
	t.Helper()
	b.write(t, func(ctx context.Context, q storage.Q) error {
		return q.InsertJob(ctx, storage.Job{ID: id, Name: name, AgentID: agent, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
			MissedRunPolicy: "skip", SpecJSON: spec, CreatedAt: 1, UpdatedAt: 1})
	})
}

// agent stores an agent last seen at seen (zero: never), revoked when revoked is set.
func (b *ccBundle) agent(t *testing.T, id, name string, seen time.Time, revoked bool) {
	t.Helper()
	b.write(t, func(ctx context.Context, q storage.Q) error {
		if err := q.InsertAgent(ctx, storage.Agent{ID: id, Name: &name, KeyHash: []byte("key-" + id), CreatedAt: 1, UpdatedAt: 1}); err != nil {
			return err
		}
		if !seen.IsZero() {
			if err := q.TouchAgentSeen(ctx, id, seen.Unix()); err != nil {
				return err
			}
		}
		if revoked {
			return q.RevokeAgent(ctx, id, b.now.Unix())
		}
		return nil
	})
}

func (b *ccBundle) notification(t *testing.T, id, runID, status string) {
	t.Helper()
	msg := "smtp: 550 mailbox unavailable"
	b.write(t, func(ctx context.Context, q storage.Q) error {
		_, err := q.InsertNotification(ctx, storage.Notification{ID: id, RunID: runID, Channel: "email", SecretName: "ops",
			Status: status, Attempts: 3, NextAttemptAt: b.now.Unix(), LastError: &msg, CreatedAt: b.now.Unix() - 600, UpdatedAt: b.now.Unix() - 60})
		return err
	})
}

func (b *ccBundle) cleanupTask(t *testing.T, runID, status string, created time.Time) {
	t.Helper()
	b.write(t, func(ctx context.Context, q storage.Q) error {
		if _, err := q.EnqueueTask(ctx, storage.CleanupQueue, storage.Task{RunID: runID, JobID: "j-ok", NodeID: "hub", TargetType: "local_dir",
			TargetSnapshotJSON: "{}", NextAttemptAt: created.Unix(), CreatedAt: created.Unix()}); err != nil {
			return err
		}
		if status == storage.TaskQueued {
			return nil
		}
		// As the worker leaves it: claimed (every task due by then), then finished.
		if _, err := q.ClaimDueTasks(ctx, storage.CleanupQueue, created.Unix(), 10); err != nil {
			return err
		}
		msg := "target unreachable"
		ok, err := q.FinishTask(ctx, storage.CleanupQueue, runID, status, created.Unix()+3600, nil, &msg, created.Unix())
		if err == nil && !ok {
			err = fmt.Errorf("task %s was not running", runID)
		}
		return err
	})
}

func (b *ccBundle) commandCenter(t *testing.T, c *apitest.Client) ccJSON {
	t.Helper()
	resp := c.Do(t, http.MethodGet, "/api/command-center", nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("command center: %s", resp)
	}
	var out ccJSON
	resp.Decode(t, &out)
	return out
}

// healthy stores a Hub with nothing to fix: a job whose runs succeed (an earlier failure was
// followed by a success), an online agent, a sent notification, a passed drill and a cleanup
// task queued a minute ago.
func (b *ccBundle) healthy(t *testing.T) {
	t.Helper()
	b.jobOn(t, "j-ok", "nightly", nil, localSpec)
	b.run(t, "j-ok", storage.RunFailed, b.now.Add(-3*time.Hour), -1, -1)
	ok := b.run(t, "j-ok", storage.RunSuccess, b.now.Add(-2*time.Hour), -1, -1)
	b.agent(t, "a-online", "web-1", b.now.Add(-10*time.Second), false)
	b.notification(t, "n-sent", ok, storage.NotificationSent)
	b.write(t, func(ctx context.Context, q storage.Q) error {
		return q.RecordVerification(ctx, "j-ok", "op-ok", "success", b.now.Add(-time.Hour).Unix())
	})
	b.cleanupTask(t, "run-young", storage.TaskQueued, b.now.Add(-time.Minute))
}

func TestCommandCenter(t *testing.T) {
	t.Parallel()

	t.Run("HealthyHubShowsNothing", func(t *testing.T) {
		t.Parallel()
		b := setupCommandCenter(t)
		b.healthy(t)
		// A viewer may read it.
		viewer := b.hub.AddUser(t, b.c, "watcher", "viewer")
		out := b.commandCenter(t, viewer)
		if len(out.Items) != 0 || out.Counts.Total != 0 {
			t.Fatalf("items on a healthy Hub: %+v", out.Items)
		}
		if out.WindowDays != 7 {
			t.Fatalf("window_days = %d, want 7", out.WindowDays)
		}
	})

	t.Run("EachProblemShowsUp", func(t *testing.T) {
		t.Parallel()
		b := setupCommandCenter(t)
		b.healthy(t)
		b.jobOn(t, "j-bad", "db dump", nil, localSpec)
		b.run(t, "j-bad", storage.RunSuccess, b.now.Add(-5*time.Hour), -1, -1)
		failed := b.run(t, "j-bad", storage.RunFailed, b.now.Add(-time.Hour), -1, -1)
		// A job whose failure is older than the window is not news.
		b.jobOn(t, "j-old", "old", nil, localSpec)
		b.run(t, "j-old", storage.RunFailed, b.now.Add(-30*24*time.Hour), -1, -1)
		b.agent(t, "a-stale", "web-2", b.now.Add(-time.Hour), false)
		b.agent(t, "a-never", "web-3", time.Time{}, false)
		b.agent(t, "a-gone", "web-4", b.now.Add(-time.Hour), true)
		b.notification(t, "n-failed", failed, storage.NotificationFailed)
		b.write(t, func(ctx context.Context, q storage.Q) error {
			return q.RecordVerification(ctx, "j-bad", "op-bad", "failed", b.now.Add(-30*time.Minute).Unix())
		})
		b.cleanupTask(t, "run-blocked", storage.TaskBlocked, b.now.Add(-2*time.Hour))
		b.cleanupTask(t, "run-stuck", storage.TaskQueued, b.now.Add(-48*time.Hour))

		out := b.commandCenter(t, b.c)
		got := map[string]ccItem{}
		for _, it := range out.Items {
			got[it.ID] = it
		}
		want := map[string]struct{ kind, severity, link string }{
			"failed_run:j-bad":             {"failed_run", "critical", "/runs/" + failed},
			"verify_failed:j-bad":          {"verify_failed", "critical", "/operations/op-bad"},
			"stale_agent:a-stale":          {"stale_agent", "warning", "/agents"},
			"stale_agent:a-never":          {"stale_agent", "warning", "/agents"},
			"notification_failed:n-failed": {"notification_failed", "warning", "/notifications"},
			"cleanup_failed":               {"cleanup_failed", "warning", "/maintenance"},
			"cleanup_pending":              {"cleanup_pending", "info", "/maintenance"},
		}
		if len(got) != len(want) {
			t.Errorf("got %d items, want %d: %+v", len(got), len(want), out.Items)
		}
		for id, w := range want {
			it, ok := got[id]
			if !ok {
				t.Errorf("missing item %s", id)
				continue
			}
			if it.Kind != w.kind || it.Severity != w.severity || it.Link != w.link || it.Title == "" {
				t.Errorf("item %s = %+v, want %+v", id, it, w)
			}
		}
		if it := got["failed_run:j-bad"]; it.RunID == nil || *it.RunID != failed {
			t.Errorf("failed run item names run %v, want %s", it.RunID, failed)
		}
		if it := got["cleanup_failed"]; it.Count == nil || *it.Count != 1 {
			t.Errorf("cleanup_failed count = %v, want 1", it.Count)
		}
		// Most severe first.
		if out.Items[0].Severity != "critical" || out.Items[len(out.Items)-1].Severity != "info" {
			t.Errorf("order: %+v", out.Items)
		}
		if out.Counts.Total != 7 || out.Counts.Critical != 2 || out.Counts.Warning != 4 || out.Counts.Info != 1 || out.Counts.ByKind["stale_agent"] != 2 {
			t.Errorf("counts = %+v", out.Counts)
		}
	})

	t.Run("BadWindowIsRefused", func(t *testing.T) {
		t.Parallel()
		b := setupCommandCenter(t)
		for _, q := range []string{"0", "91", "x"} {
			resp := b.c.Do(t, http.MethodGet, "/api/command-center?days="+q, nil)
			if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_days" {
				t.Errorf("days=%s: %s", q, resp)
			}
		}
	})
}

type integrationsStorage struct {
	SecretKinds []string `json:"secret_kinds"`
	Nodes       []struct {
		NodeID      string `json:"node_id"`
		IsHub       bool   `json:"is_hub"`
		Online      bool   `json:"online"`
		Credentials []struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
			Jobs []struct{ ID, Name string }
		} `json:"credentials"`
		Missing []struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
			Jobs []struct{ ID, Name string }
		} `json:"missing"`
	} `json:"nodes"`
}

type integrationsDistribution struct {
	Credentials []struct {
		Kind          string   `json:"kind"`
		Name          string   `json:"name"`
		OnHub         bool     `json:"on_hub"`
		Agents        []string `json:"agents"`
		MissingAgents []string `json:"missing_agents"`
	} `json:"credentials"`
	Agents []struct {
		AgentID     string   `json:"agent_id"`
		Credentials []string `json:"credentials"`
	} `json:"agents"`
	Notifications []struct {
		Channel      string `json:"channel"`
		SecretKind   string `json:"secret_kind"`
		Destinations []struct {
			Name    string `json:"name"`
			Enabled bool   `json:"enabled"`
		} `json:"destinations"`
	} `json:"notifications"`
}

type integrationsSummary struct {
	Storage struct {
		SecretKinds []string `json:"secret_kinds"`
		Nodes       int      `json:"nodes"`
		Credentials int      `json:"credentials"`
		Jobs        int      `json:"jobs_using_credentials"`
		Missing     int      `json:"missing"`
	} `json:"storage"`
	Distribution struct {
		Agents                int `json:"agents"`
		AgentsWithCredentials int `json:"agents_with_credentials"`
	} `json:"distribution"`
	Notifications struct {
		Channels     int      `json:"channels"`
		Destinations int      `json:"destinations"`
		Unconfigured []string `json:"unconfigured_channels"`
	} `json:"notifications"`
}

func TestIntegrations(t *testing.T) {
	t.Parallel()
	b := setupCommandCenter(t)
	put := func(node, kind, name, payload string) { b.putSecret(t, node, kind, name, payload) }
	webdav := `{"username":"u","password":"` + secretValue + `"}`
	put("hub", "webdav", "nas", webdav)
	put("hub", "smtp", "ops", `{"host":"mail.example","port":587,"username":"u","password":"`+secretValue+`","from":"a@example","to":["b@example"]}`)
	b.agent(t, "a-1", "web-1", b.now.Add(-5*time.Second), false)
	b.agent(t, "a-2", "web-2", b.now.Add(-5*time.Second), false)
	put("a-2", "webdav", "offsite", webdav)
	a1, a2 := "a-1", "a-2"
	b.jobOn(t, "j-hub", "hub nightly", nil, hubWebDAVSpec)
	b.jobOn(t, "j-local", "local", nil, localSpec)
	b.jobOn(t, "j-a2", "agent two", &a2, agentWebDAVSpec)

	viewer := b.hub.AddUser(t, b.c, "watcher", "viewer")
	get := func(path string, v any) {
		t.Helper()
		resp := viewer.Do(t, http.MethodGet, path, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp)
		}
		if strings.Contains(string(resp.Body), secretValue) {
			t.Fatalf("GET %s shows a secret value: %s", path, resp.Body)
		}
		resp.Decode(t, v)
	}

	t.Run("HealthyHasNothingMissing", func(t *testing.T) {
		var st integrationsStorage
		get("/api/integrations/storage", &st)
		if strings.Join(st.SecretKinds, ",") != "s3,webdav" {
			t.Errorf("secret_kinds = %v (from the target drivers)", st.SecretKinds)
		}
		if len(st.Nodes) != 3 || st.Nodes[0].NodeID != "hub" || !st.Nodes[0].IsHub {
			t.Fatalf("nodes = %+v", st.Nodes)
		}
		for _, n := range st.Nodes {
			if len(n.Missing) != 0 {
				t.Errorf("node %s misses %+v", n.NodeID, n.Missing)
			}
		}
		hub := st.Nodes[0]
		if len(hub.Credentials) != 1 || hub.Credentials[0].Name != "nas" || len(hub.Credentials[0].Jobs) != 1 || hub.Credentials[0].Jobs[0].ID != "j-hub" {
			t.Errorf("hub credentials = %+v (smtp is no target credential)", hub.Credentials)
		}
	})

	// A job on a-1 referencing a credential only a-2 holds.
	b.jobOn(t, "j-a1", "agent one", &a1, agentWebDAVSpec)

	t.Run("MissingCredentialShowsUp", func(t *testing.T) {
		var st integrationsStorage
		get("/api/integrations/storage", &st)
		var found bool
		for _, n := range st.Nodes {
			switch n.NodeID {
			case "a-1":
				found = len(n.Missing) == 1 && n.Missing[0].Kind == "webdav" && n.Missing[0].Name == "offsite" &&
					len(n.Missing[0].Jobs) == 1 && n.Missing[0].Jobs[0].ID == "j-a1"
			case "a-2":
				if len(n.Missing) != 0 || len(n.Credentials) != 1 || n.Credentials[0].Jobs[0].ID != "j-a2" {
					t.Errorf("a-2 = %+v", n)
				}
			}
		}
		if !found {
			t.Errorf("a-1 does not show the missing credential: %+v", st.Nodes)
		}

		var d integrationsDistribution
		get("/api/integrations/distribution", &d)
		var off bool
		for _, c := range d.Credentials {
			if c.Kind == "webdav" && c.Name == "offsite" {
				off = !c.OnHub && strings.Join(c.Agents, ",") == "a-2" && strings.Join(c.MissingAgents, ",") == "a-1"
			}
		}
		if !off {
			t.Errorf("distribution of webdav/offsite: %+v", d.Credentials)
		}
		if len(d.Agents) != 2 || strings.Join(d.Agents[1].Credentials, ",") != "webdav/offsite" || len(d.Agents[0].Credentials) != 0 {
			t.Errorf("agents = %+v", d.Agents)
		}
		var email bool
		for _, c := range d.Notifications {
			if c.Channel == "email" {
				email = c.SecretKind == "smtp" && len(c.Destinations) == 1 && c.Destinations[0].Name == "ops" && c.Destinations[0].Enabled
			}
		}
		if len(d.Notifications) < 3 || !email {
			t.Errorf("notification channels = %+v", d.Notifications)
		}

		var sum integrationsSummary
		get("/api/integrations", &sum)
		if sum.Storage.Nodes != 3 || sum.Storage.Credentials != 2 || sum.Storage.Jobs != 3 || sum.Storage.Missing != 1 ||
			sum.Distribution.Agents != 2 || sum.Distribution.AgentsWithCredentials != 1 ||
			sum.Notifications.Destinations != 1 || len(sum.Notifications.Unconfigured) != len(d.Notifications)-1 {
			t.Errorf("summary = %+v", sum)
		}
	})
}

package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"

	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// connectFleetAgent enrolls a real agent "nas", version 1.2.3, that keeps and acknowledges the
// config snapshots the Hub pushes, and runs it until the test ends.
func connectFleetAgent(t *testing.T, hub *apitest.Hub, c *apitest.Client, sock *agentsock.Hub) *client.Agent {
	t.Helper()
	status, tok := c.Post(t, "/api/agents/enrollment-tokens", map[string]any{"ttl_seconds": 600, "remaining_uses": 1})
	if status != http.StatusOK {
		t.Fatalf("create token: %d %v", status, tok)
	}
	dir := t.TempDir()
	managed, err := client.OpenManaged(dir, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := client.New(ctx, client.Options{HubURL: hub.URL, EnrollToken: tok["token"].(string), Name: "nas", Version: "1.2.3",
		DataDir: dir, Heartbeat: time.Second, Logger: zerolog.Nop(), Managed: managed})
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
	eventually(t, "agent connected", func() bool { return sock.Connected(a.ID()) })
	return a
}

type fleetListBody struct {
	Summary struct{ Total, Online, Offline, Revoked, Drifted int }
	Items   []struct {
		ID         string
		Name       *string
		Status     string
		LastSeenAt *int64 `json:"last_seen_at"`
		Labels     []string
		ConfigSync struct {
			State string
		} `json:"config_sync"`
		AssignedJobsTotal int64 `json:"assigned_jobs_total"`
		PendingTasksTotal int64 `json:"pending_tasks_total"`
		Version           *string
		Connected         bool
	}
	Page     int
	PageSize int `json:"page_size"`
	Total    int
}

type fleetDetailBody struct {
	Agent struct {
		ID, Status        string
		Version           *string
		BackupKinds       []string `json:"backup_kinds"`
		Labels            []string
		AssignedJobsTotal int64 `json:"assigned_jobs_total"`
	}
	Sync struct {
		DesiredSnapshotID *string `json:"desired_snapshot_id"`
		DesiredSnapshotAt *int64  `json:"desired_snapshot_at"`
		AppliedSnapshotID *string `json:"applied_snapshot_id"`
		AppliedSnapshotAt *int64  `json:"applied_snapshot_at"`
		State             string
	}
	RecentActivity []struct {
		RunID     string `json:"run_id"`
		JobName   string `json:"job_name"`
		StartedAt int64  `json:"started_at"`
	} `json:"recent_activity"`
	RelatedJobs  []struct{ ID, Name string } `json:"related_jobs"`
	Capabilities struct {
		CanRotateKey bool `json:"can_rotate_key"`
		CanRevoke    bool `json:"can_revoke"`
		CanSyncNow   bool `json:"can_sync_now"`
	}
}

// TestFleetAPI drives GET /api/fleet and /api/fleet/{id} with a real enrolled agent, one never
// seen and one revoked, and jobs and runs in the database.
func TestFleetAPI(t *testing.T) {
	t.Parallel()
	// With config snapshots, so that the Hub pushes the agent its config and the agent applies it.
	var sock *agentsock.Hub
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		sock = agentsock.New(agentsock.Config{DB: cfg.DB, Clock: cfg.Clock, Logger: cfg.Logger,
			Snapshots: agentsock.StoreSnapshots{DB: cfg.DB, Store: cfg.Secrets, Clock: cfg.Clock}})
		cfg.Agents = sock
	}))
	t.Cleanup(sock.Close)
	c := hub.Login(t)
	a := connectFleetAgent(t, hub, c, sock)
	ctx := context.Background()
	w := hub.DB.Writer()
	epoch := apitest.Epoch.Unix()
	for _, ag := range []struct {
		id      string
		created int64
	}{{"old", epoch - 100}, {"gone", epoch - 200}} {
		if err := w.InsertAgent(ctx, storage.Agent{ID: ag.id, KeyHash: []byte(ag.id), CreatedAt: ag.created, UpdatedAt: ag.created}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.RevokeAgent(ctx, "gone", epoch); err != nil {
		t.Fatal(err)
	}
	agentID := a.ID()
	for i, j := range []storage.Job{
		{ID: uuidN(1, 1), Name: "photos", AgentID: &agentID},
		{ID: uuidN(1, 2), Name: "archived", AgentID: &agentID},
		{ID: uuidN(1, 3), Name: "on the hub"},
	} {
		j.ScheduleTimezone, j.OverlapPolicy, j.MissedRunPolicy, j.SpecJSON = "UTC", "queue", "skip", "{}"
		j.CreatedAt, j.UpdatedAt = epoch+int64(i), epoch+int64(i)
		if err := w.InsertJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.ArchiveJob(ctx, uuidN(1, 2), epoch); err != nil {
		t.Fatal(err)
	}
	// 12 runs of the agent's live job, one of its archived job (older) and one on the Hub (newer).
	runs := []storage.Run{{ID: uuidN(2, 99), JobID: uuidN(1, 2), Status: storage.RunSuccess, StartedAt: epoch - 1000},
		{ID: uuidN(2, 98), JobID: uuidN(1, 3), Status: storage.RunSuccess, StartedAt: epoch + 1000}}
	for i := range 12 {
		runs = append(runs, storage.Run{ID: uuidN(2, i), JobID: uuidN(1, 1), Status: storage.RunFailed, StartedAt: epoch - 500 + int64(i)})
	}
	for _, r := range runs {
		if err := w.InsertRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	list := func(t *testing.T, c *apitest.Client, query string) fleetListBody {
		t.Helper()
		var b fleetListBody
		resp := c.Do(t, "GET", "/api/fleet"+query, nil)
		if resp.Status != 200 {
			t.Fatalf("GET /api/fleet%s: %s", query, resp)
		}
		resp.Decode(t, &b)
		return b
	}

	t.Run("List", func(t *testing.T) {
		// The Hub pushes the agent's config when it connects; the agent applies it.
		var b fleetListBody
		eventually(t, "config synced", func() bool {
			b = list(t, c, "")
			return len(b.Items) == 3 && b.Items[0].ConfigSync.State == "synced"
		})
		s := b.Summary
		if s.Total != 3 || s.Online != 1 || s.Offline != 1 || s.Revoked != 1 || s.Drifted != 0 || b.Total != 3 || b.Page != 1 || b.PageSize != 3 {
			t.Fatalf("summary %+v, page %d/%d of %d", s, b.Page, b.PageSize, b.Total)
		}
		var got []string
		for _, it := range b.Items {
			got = append(got, it.Status)
		}
		if fmt.Sprint(got) != "[online offline revoked]" || b.Items[1].ID != "old" || b.Items[2].ID != "gone" {
			t.Fatalf("statuses %v, want newest enrolled first", got)
		}
		nas := b.Items[0]
		if nas.ID != a.ID() || *nas.Name != "nas" || nas.AssignedJobsTotal != 1 || nas.PendingTasksTotal != 0 ||
			nas.Version == nil || *nas.Version != "1.2.3" || !nas.Connected || nas.LastSeenAt == nil || nas.Labels == nil {
			t.Fatalf("agent item %+v", nas)
		}
		if old := b.Items[1]; old.ConfigSync.State != "offline" || old.Version != nil || old.AssignedJobsTotal != 0 || old.LastSeenAt != nil {
			t.Fatalf("never-seen agent %+v", old)
		}
	})

	t.Run("Filters", func(t *testing.T) {
		if b := list(t, c, "?status=online"); b.Total != 1 || b.Items[0].ID != a.ID() || b.Summary.Total != 1 {
			t.Fatalf("online: %+v", b)
		}
		if b := list(t, c, "?status=revoked"); b.Total != 1 || b.Items[0].ID != "gone" {
			t.Fatalf("revoked: %+v", b)
		}
		if b := list(t, c, "?q=OL"); b.Total != 1 || b.Items[0].ID != "old" {
			t.Fatalf("search: %+v", b)
		}
		if b := list(t, c, "?page=2&page_size=2"); b.Total != 3 || len(b.Items) != 1 || b.Items[0].ID != "gone" || b.Page != 2 || b.PageSize != 2 {
			t.Fatalf("page 2: %+v", b)
		}
		if b := list(t, c, "?page=1"); b.PageSize != 20 || len(b.Items) != 3 {
			t.Fatalf("default page size: %+v", b)
		}
		for q, code := range map[string]string{"?page=0": "invalid_page", "?page_size=0": "invalid_page_size",
			"?status=lost": "invalid_status", "?labels_mode=xor": "invalid_labels_mode"} {
			if resp := c.Do(t, "GET", "/api/fleet"+q, nil); resp.Status != 400 || resp.ErrorCode() != code {
				t.Errorf("%s: %s, want 400 %s", q, resp, code)
			}
		}
	})

	t.Run("Detail", func(t *testing.T) {
		var d fleetDetailBody
		resp := c.Do(t, "GET", "/api/fleet/"+a.ID(), nil)
		resp.Decode(t, &d)
		if resp.Status != 200 || d.Agent.ID != a.ID() || d.Agent.Status != "online" || d.Agent.Version == nil ||
			len(d.Agent.BackupKinds) == 0 || d.Agent.AssignedJobsTotal != 1 || d.Agent.Labels == nil {
			t.Fatalf("detail: %s", resp)
		}
		if d.Sync.State != "synced" || d.Sync.DesiredSnapshotID == nil || d.Sync.DesiredSnapshotAt == nil ||
			d.Sync.AppliedSnapshotID == nil || *d.Sync.AppliedSnapshotID != *d.Sync.DesiredSnapshotID || d.Sync.AppliedSnapshotAt == nil {
			t.Fatalf("sync: %+v", d.Sync)
		}
		// The ten newest runs of the agent's jobs, archived ones included; the Hub's run is not one.
		if len(d.RecentActivity) != 10 || d.RecentActivity[0].RunID != uuidN(2, 11) || d.RecentActivity[9].RunID != uuidN(2, 2) ||
			d.RecentActivity[0].JobName != "photos" {
			t.Fatalf("recent activity: %+v", d.RecentActivity)
		}
		if len(d.RelatedJobs) != 1 || d.RelatedJobs[0].Name != "photos" {
			t.Fatalf("related jobs (archived left out): %+v", d.RelatedJobs)
		}
		if !d.Capabilities.CanRevoke || !d.Capabilities.CanRotateKey || !d.Capabilities.CanSyncNow {
			t.Fatalf("actions of a live agent: %+v", d.Capabilities)
		}

		resp = c.Do(t, "GET", "/api/fleet/gone", nil)
		resp.Decode(t, &d)
		if resp.Status != 200 || d.Agent.Status != "revoked" || d.Capabilities.CanRevoke || d.Capabilities.CanRotateKey ||
			d.Capabilities.CanSyncNow || len(d.RecentActivity) != 0 || len(d.RelatedJobs) != 0 || d.Agent.BackupKinds == nil {
			t.Fatalf("revoked agent: %s", resp)
		}
		// Ids that are no agent's: odd bytes, an SQL wildcard, an encoded slash, a huge one.
		for _, id := range []string{"nope", "%25", "%27%20OR%201%3D1", "a%2F..%2Fb", "%E2%98%83", strings.Repeat("x", 4000)} {
			if resp := c.Do(t, "GET", "/api/fleet/"+id, nil); resp.Status != 404 || resp.ErrorCode() != "agent_not_found" {
				t.Fatalf("unknown agent %.40s: %s", id, resp)
			}
		}
	})

	t.Run("ViewerReads", func(t *testing.T) {
		viewer := hub.AddUser(t, c, "watcher", "viewer")
		if b := list(t, viewer, ""); b.Total != 3 {
			t.Fatalf("viewer list: %+v", b)
		}
		if resp := viewer.Do(t, "GET", "/api/fleet/"+a.ID(), nil); resp.Status != 200 {
			t.Fatalf("viewer detail: %s", resp)
		}
		if resp := hub.Client(t).Do(t, "GET", "/api/fleet", nil); resp.Status != 401 {
			t.Fatalf("anonymous: %s", resp)
		}
	})
}

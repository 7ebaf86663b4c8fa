package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/storage"
)

// The original's shapes of the integrations routes, served beside ours (integrations.rs).

type origStorageSummary struct {
	ItemsTotal   int64 `json:"items_total"`
	InUseTotal   int64 `json:"in_use_total"`
	InvalidTotal int64 `json:"invalid_total"`
}

type origRunRef struct {
	State           string  `json:"state"`
	JobID           string  `json:"job_id"`
	LatestRunID     *string `json:"latest_run_id"`
	LatestRunStatus *string `json:"latest_run_status"`
	LatestRunAt     *int64  `json:"latest_run_at"`
}

type origStorageDetails struct {
	NodeID  string             `json:"node_id"`
	Summary origStorageSummary `json:"summary"`
	Items   []struct {
		Name       string       `json:"name"`
		UsageTotal int64        `json:"usage_total"`
		Usage      []origRunRef `json:"usage"`
		Health     origRunRef   `json:"health"`
	} `json:"items"`
}

type origDistSummary struct {
	CoverageTotal int64 `json:"coverage_total"`
	DriftedTotal  int64 `json:"drifted_total"`
	FailedTotal   int64 `json:"failed_total"`
	OfflineTotal  int64 `json:"offline_total"`
}

type origDistDetails struct {
	Summary origDistSummary `json:"summary"`
	Items   []struct {
		AgentID           string  `json:"agent_id"`
		ConnectionStatus  string  `json:"connection_status"`
		DistributionState string  `json:"distribution_state"`
		PendingTasksTotal int64   `json:"pending_tasks_total"`
		LastErrorKind     *string `json:"last_error_kind"`
	} `json:"items"`
}

type origIntegrationsSummary struct {
	Storage struct {
		State   string             `json:"state"`
		Summary origStorageSummary `json:"summary"`
	} `json:"storage"`
	Notifications struct {
		State   string `json:"state"`
		Summary struct {
			DestinationsTotal   int64 `json:"destinations_total"`
			RecentFailuresTotal int64 `json:"recent_failures_total"`
			QueueBacklogTotal   int64 `json:"queue_backlog_total"`
		} `json:"summary"`
	} `json:"notifications"`
	Distribution struct {
		State   string          `json:"state"`
		Summary origDistSummary `json:"summary"`
	} `json:"distribution"`
}

func TestIntegrationsOriginalShapes(t *testing.T) {
	t.Parallel()
	b := setupCommandCenter(t)
	put := func(node, kind, name, payload string) { b.putSecret(t, node, kind, name, payload) }
	webdav := `{"username":"u","password":"p"}`
	put("hub", "webdav", "nas", webdav)
	put("hub", "webdav", "spare", webdav)
	put("hub", "smtp", "ops", `{"host":"mail.example","port":587,"from":"a@example","to":["b@example"]}`)
	b.agent(t, "a-1", "web-1", b.now.Add(-5*time.Second), false)
	b.agent(t, "a-2", "web-2", b.now.Add(-5*time.Second), false)
	b.agent(t, "a-3", "web-3", b.now.Add(-time.Hour), false)
	b.agent(t, "a-4", "web-4", b.now.Add(-5*time.Second), true)
	put("a-2", "webdav", "offsite", webdav)
	a1, a2 := "a-1", "a-2"
	b.jobOn(t, "j-hub", "hub nightly", nil, hubWebDAVSpec)
	b.jobOn(t, "j-a1", "agent one", &a1, agentWebDAVSpec) // offsite is not on a-1
	b.jobOn(t, "j-a2", "agent two", &a2, agentWebDAVSpec)
	ok := b.run(t, "j-hub", storage.RunSuccess, b.now.Add(-2*time.Hour), -1, -1)
	failed := b.run(t, "j-hub", storage.RunFailed, b.now.Add(-time.Hour), -1, -1)
	b.notification(t, "n-failed", failed, storage.NotificationFailed)
	b.notification(t, "n-queued", ok, storage.NotificationQueued) // one per run and destination
	now := b.now.Unix()
	b.write(t, func(ctx context.Context, q storage.Q) error {
		// a-1: the last send failed; a-2: applied what it was sent; a-3: never applied.
		for _, step := range []func() error{
			func() error { return q.SetDesiredConfig(ctx, "a-1", "s1", now) },
			func() error { return q.SetConfigSyncError(ctx, "a-1", "send_failed", "agent went away", now) },
			func() error { return q.SetDesiredConfig(ctx, "a-2", "s2", now) },
			func() error { return q.SetAppliedConfig(ctx, "a-2", "s2", now) },
			func() error { return q.SetDesiredConfig(ctx, "a-3", "s3", now) },
		} {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	})

	get := func(path string, v any) {
		t.Helper()
		resp := b.c.Do(t, http.MethodGet, path, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp)
		}
		resp.Decode(t, v)
	}

	t.Run("Summary", func(t *testing.T) {
		var s origIntegrationsSummary
		get("/api/integrations", &s)
		// nas, spare and a-2's offsite; nas and offsite are named by jobs; j-a1 lacks its own.
		if s.Storage.Summary != (origStorageSummary{3, 2, 1}) || s.Storage.State != "degraded" {
			t.Errorf("storage = %+v", s.Storage)
		}
		n := s.Notifications
		if n.Summary.DestinationsTotal != 1 || n.Summary.RecentFailuresTotal != 1 || n.Summary.QueueBacklogTotal != 1 || n.State != "degraded" {
			t.Errorf("notifications = %+v", n)
		}
		if s.Distribution.Summary != (origDistSummary{3, 1, 1, 1}) || s.Distribution.State != "degraded" {
			t.Errorf("distribution = %+v (a revoked agent is not covered)", s.Distribution)
		}
	})

	t.Run("StorageOfTheHub", func(t *testing.T) {
		var d origStorageDetails
		get("/api/integrations/storage", &d)
		if d.NodeID != "hub" || d.Summary != (origStorageSummary{2, 1, 0}) || len(d.Items) != 2 {
			t.Fatalf("hub storage = %+v", d)
		}
		nas, spare := d.Items[0], d.Items[1]
		if nas.Name != "nas" || nas.UsageTotal != 1 || nas.Usage[0].JobID != "j-hub" || nas.Usage[0].LatestRunID == nil ||
			*nas.Usage[0].LatestRunID != failed || nas.Health.State != "attention" || *nas.Health.LatestRunStatus != "failed" ||
			*nas.Health.LatestRunAt != b.now.Add(-time.Hour).Unix() {
			t.Errorf("nas = %+v", nas)
		}
		if spare.Name != "spare" || spare.UsageTotal != 0 || len(spare.Usage) != 0 || spare.Health.State != "unused" || spare.Health.LatestRunID != nil {
			t.Errorf("spare = %+v", spare)
		}
	})

	t.Run("StorageOfAnAgent", func(t *testing.T) {
		var d origStorageDetails
		get("/api/integrations/storage?node_id=a-2", &d)
		if d.NodeID != "a-2" || d.Summary != (origStorageSummary{1, 1, 0}) || len(d.Items) != 1 ||
			d.Items[0].Health.State != "configured" || d.Items[0].Usage[0].LatestRunID != nil {
			t.Errorf("a-2 storage = %+v", d)
		}
		get("/api/integrations/storage?node_id=a-1", &d)
		if d.NodeID != "a-1" || d.Summary != (origStorageSummary{0, 1, 1}) || len(d.Items) != 0 {
			t.Errorf("a-1 storage = %+v", d)
		}
	})

	t.Run("StorageOfAnUnknownOrRevokedNode", func(t *testing.T) {
		for node, reason := range map[string]string{"nope": "not_found", "a-4": "revoked"} {
			resp := b.c.Do(t, http.MethodGet, "/api/integrations/storage?node_id="+node, nil)
			var e struct {
				Details struct{ Field, Reason string } `json:"details"`
			}
			resp.Decode(t, &e)
			if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_node_id" || e.Details.Field != "node_id" || e.Details.Reason != reason {
				t.Errorf("node_id=%s: %s", node, resp)
			}
		}
	})

	t.Run("Distribution", func(t *testing.T) {
		var d origDistDetails
		get("/api/integrations/distribution", &d)
		if d.Summary != (origDistSummary{3, 1, 1, 1}) || len(d.Items) != 3 {
			t.Fatalf("distribution = %+v", d)
		}
		want := map[string][2]string{"a-1": {"online", "failed"}, "a-2": {"online", "covered"}, "a-3": {"offline", "drifted"}}
		for _, it := range d.Items {
			if w := want[it.AgentID]; it.ConnectionStatus != w[0] || it.DistributionState != w[1] {
				t.Errorf("%s = %+v, want %v", it.AgentID, it, w)
			}
			if (it.AgentID == "a-1") != (it.LastErrorKind != nil) {
				t.Errorf("%s last_error_kind = %v", it.AgentID, it.LastErrorKind)
			}
		}
	})
}

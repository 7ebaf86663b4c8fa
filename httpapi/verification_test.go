package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/drills"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// TestJobVerificationScheduleAndProof: a job carries its drill schedule (the job's timezone by
// default), an invalid one is a 400 that stores nothing, and the job shows its last drill and
// whether it is overdue against the stale_after_days setting.
func TestJobVerificationScheduleAndProof(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var drillSvc *drills.Service
	jh := startJobsHub(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		ops := operations.New(operations.Config{DB: cfg.DB, Clock: cfg.Clock, Logger: zerolog.Nop(), DataDir: t.TempDir()})
		drillSvc = drills.New(drills.Config{DB: cfg.DB, Clock: cfg.Clock, Log: zerolog.Nop(), Ops: ops})
		cfg.Drills = drillSvc
		cfg.DrillErrors = httpapi.DrillErrors{JobArchived: drills.ErrJobArchived, NoSnapshot: drills.ErrNoSnapshot}
	}))
	now := jh.Clock.Now().Unix()

	st, body := jh.c.Post(t, "/api/jobs", jobBody(map[string]any{"verification": map[string]any{"schedule": "0 3 * * 0", "mode": "pray"}}))
	if st != http.StatusBadRequest || errCode(body) != "invalid_verification" {
		t.Fatalf("invalid verification: %d %v", st, body)
	}
	var n int
	if err := jh.DB.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM jobs`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("a refused job was stored: %d %v", n, err)
	}

	job := jh.create(t, map[string]any{"verification": map[string]any{"schedule": "0 3 * * 0"}})
	id := job["id"].(string)
	ver, _ := job["verification"].(map[string]any)
	if ver["schedule"] != "0 3 * * 0" || ver["timezone"] != "Europe/Paris" || ver["mode"] != "verify" ||
		job["last_verified_at"] != nil || job["verify_overdue"] != true {
		t.Fatalf("created job %v", job)
	}

	// No snapshot yet: nothing to drill.
	if st, body := jh.c.Post(t, "/api/jobs/"+id+"/verify", nil); st != http.StatusConflict || errCode(body) != "no_snapshot" {
		t.Fatalf("verify without a snapshot: %d %v", st, body)
	}
	err := jh.DB.Write(ctx, func(q storage.Q) error {
		end := now
		if err := q.InsertRun(ctx, storage.Run{ID: "r1", JobID: id, Status: storage.RunSuccess, StartedAt: now - 1, EndedAt: &end}); err != nil {
			return err
		}
		return q.UpsertRunArtifact(ctx, storage.RunArtifact{RunID: "r1", JobID: id, NodeID: "hub", TargetType: "local_dir",
			TargetSnapshotJSON: `{"node_id":"hub","target":{"type":"local_dir","base_dir":"/bk"}}`, ArtifactFormat: "archive_v1",
			Status: storage.SnapshotPresent, StartedAt: now - 1, EndedAt: now, CreatedAt: now, UpdatedAt: now})
	})
	if err != nil {
		t.Fatal(err)
	}
	if st, body := jh.c.Post(t, "/api/jobs/"+id+"/verify", nil); st != http.StatusAccepted || body["status"] != "pending" {
		t.Fatalf("verify now: %d %v", st, body)
	}
	if _, got := jh.c.Get(t, "/api/jobs/"+id); got["verify_pending_at"] != float64(now) {
		t.Fatalf("pending drill not shown: %v", got)
	}

	// A drill proved the job 2 days ago: fresh under the default 30 days, overdue under 1.
	if err := jh.DB.Writer().RecordVerification(ctx, id, "op-1", storage.OperationSuccess, now-2*86400); err != nil {
		t.Fatal(err)
	}
	_, got := jh.c.Get(t, "/api/jobs/"+id)
	if got["last_verify_status"] != "success" || got["last_verify_op_id"] != "op-1" || got["last_proven_at"] != float64(now-2*86400) ||
		got["verify_overdue"] != false {
		t.Fatalf("proven job %v", got)
	}
	if st, body := jh.c.Get(t, "/api/settings/verification"); st != http.StatusOK || body["stale_after_days"] != float64(30) {
		t.Fatalf("default settings: %d %v", st, body)
	}
	for _, bad := range []struct {
		body any
		code string
	}{
		{map[string]any{"stale_after_days": 0}, "invalid_stale_after_days"},
		{map[string]any{"stale_after_days": 3651}, "invalid_stale_after_days"},
		{map[string]any{"stale_after_days": "30"}, "invalid_json"},
		{map[string]any{"stale_after_days": 1e30}, "invalid_json"},
		{map[string]any{"stale_after_days": 30, "nope": 1}, "invalid_json"},
		{[]any{30}, "invalid_json"},
	} {
		if st, body := jh.c.Put(t, "/api/settings/verification", bad.body); st != http.StatusBadRequest || errCode(body) != bad.code {
			t.Fatalf("settings %v: %d %v, want 400 %s", bad.body, st, body, bad.code)
		}
	}
	if _, body := jh.c.Get(t, "/api/settings/verification"); body["stale_after_days"] != float64(30) {
		t.Fatalf("a refused save changed the settings: %v", body)
	}
	if st, body := jh.c.Put(t, "/api/settings/verification", map[string]any{"stale_after_days": 1}); st != http.StatusOK {
		t.Fatalf("save settings: %d %v", st, body)
	}
	st, list := jh.c.Get(t, "/api/jobs")
	items, _ := list["items"].([]any)
	if st != http.StatusOK || len(items) != 1 || items[0].(map[string]any)["verify_overdue"] != true ||
		items[0].(map[string]any)["last_verify_status"] != "success" {
		t.Fatalf("job list: %d %v", st, list)
	}

	// A full update without "verification" removes the drill schedule; the proof stays.
	st, upd := jh.c.Put(t, "/api/jobs/"+id, jobBody(nil))
	if st != http.StatusOK || upd["verification"] != nil || upd["last_verify_status"] != "success" {
		t.Fatalf("update: %d %v", st, upd)
	}
}

// TestDashboardVerificationSummary: the dashboard counts jobs never proven, proven too long ago
// and whose last drill failed, and lists them.
func TestDashboardVerificationSummary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	jh := startJobsHub(t)
	now := jh.Clock.Now().Unix()
	ids := map[string]string{}
	for _, name := range []string{"never", "fresh", "stale", "failed"} {
		ids[name] = jh.create(t, map[string]any{"name": name})["id"].(string)
	}
	w := jh.DB.Writer()
	for name, rec := range map[string]struct {
		status string
		at     int64
	}{"fresh": {"success", now - 86400}, "stale": {"success", now - 40*86400}, "failed": {"failed", now - 3600}} {
		if err := w.RecordVerification(ctx, ids[name], "op-"+name, rec.status, rec.at); err != nil {
			t.Fatal(err)
		}
	}
	st, body := jh.c.Get(t, "/api/dashboard/overview")
	v, _ := body["verification"].(map[string]any)
	if st != http.StatusOK || v["stale_after_days"] != float64(30) || v["jobs"] != float64(4) || v["never_proven"] != float64(2) ||
		v["stale"] != float64(1) || v["last_failed"] != float64(1) {
		t.Fatalf("dashboard verification: %d %v", st, v)
	}
	list, _ := v["unproven"].([]any)
	var names []string
	for _, it := range list {
		names = append(names, it.(map[string]any)["job_name"].(string))
	}
	if len(names) != 3 || names[0] != "failed" || names[1] != "never" || names[2] != "stale" {
		t.Fatalf("unproven jobs %v", names)
	}
}

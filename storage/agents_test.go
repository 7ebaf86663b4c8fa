package storage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

func ptr[T any](v T) *T { return &v }

func TestConsumeEnrollmentToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	w := db.Writer()
	mk := func(hash string, expires int64, uses *int64) {
		t.Helper()
		if err := w.InsertEnrollmentToken(ctx, storage.EnrollmentToken{TokenHash: []byte(hash), CreatedAt: 1, ExpiresAt: expires, RemainingUses: uses}); err != nil {
			t.Fatal(err)
		}
	}
	mk("unlimited", 100, nil)
	mk("two", 100, ptr[int64](2))
	mk("old", 10, nil)
	mk("zero", 100, ptr[int64](0))

	for i := 0; i < 3; i++ {
		if err := w.ConsumeEnrollmentToken(ctx, []byte("unlimited"), 50); err != nil {
			t.Fatalf("unlimited use %d: %v", i, err)
		}
	}
	for i, want := range []error{nil, nil, storage.ErrTokenInvalid} {
		if err := w.ConsumeEnrollmentToken(ctx, []byte("two"), 50); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Fatalf("two-use token, use %d: %v, want %v", i, err, want)
		}
	}
	if err := w.ConsumeEnrollmentToken(ctx, []byte("old"), 50); !errors.Is(err, storage.ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	if err := w.ConsumeEnrollmentToken(ctx, []byte("old"), 50); !errors.Is(err, storage.ErrTokenInvalid) {
		t.Fatalf("expired token was not deleted: %v", err)
	}
	if err := w.ConsumeEnrollmentToken(ctx, []byte("zero"), 50); !errors.Is(err, storage.ErrTokenExhausted) {
		t.Fatalf("zero uses: %v", err)
	}
	if err := w.ConsumeEnrollmentToken(ctx, []byte("nope"), 50); !errors.Is(err, storage.ErrTokenInvalid) {
		t.Fatalf("unknown: %v", err)
	}
}

func TestAgentLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	w := db.Writer()
	if err := w.InsertAgent(ctx, storage.Agent{ID: "a1", Name: ptr("nas"), KeyHash: []byte("k1"), CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	a, err := db.Reader().GetAgentByKeyHash(ctx, []byte("k1"))
	if err != nil || a.ID != "a1" {
		t.Fatalf("by key: %v %v", a.ID, err)
	}
	if err := w.RotateAgentKey(ctx, "a1", []byte("k2"), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Reader().GetAgentByKeyHash(ctx, []byte("k1")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("old key still works: %v", err)
	}
	if err := w.SetAgentLabels(ctx, "a1", []string{"b", "a"}, 3); err != nil {
		t.Fatal(err)
	}
	if err := w.AddAgentLabels(ctx, "a1", []string{"a", "c"}, 3); err != nil {
		t.Fatal(err)
	}
	if err := w.RemoveAgentLabels(ctx, "a1", []string{"b", "zz"}); err != nil {
		t.Fatal(err)
	}
	a, err = db.Reader().GetAgent(ctx, "a1")
	if err != nil || len(a.Labels) != 2 || a.Labels[0] != "a" || a.Labels[1] != "c" {
		t.Fatalf("labels: %v %v", a.Labels, err)
	}
	if err := w.TouchAgentSeen(ctx, "a1", 100); err != nil {
		t.Fatal(err)
	}
	if err := w.TouchAgentSeen(ctx, "a1", 90); err != nil {
		t.Fatal(err)
	}
	if a, _ = db.Reader().GetAgent(ctx, "a1"); *a.LastSeenAt != 100 {
		t.Fatalf("last seen moved backwards: %d", *a.LastSeenAt)
	}
	if err := w.RevokeAgent(ctx, "a1", 200); err != nil {
		t.Fatal(err)
	}
	if err := w.RevokeAgent(ctx, "a1", 300); err != nil {
		t.Fatal(err)
	}
	if a, _ = db.Reader().GetAgent(ctx, "a1"); *a.RevokedAt != 200 {
		t.Fatalf("second revoke changed the time: %d", *a.RevokedAt)
	}
	if err := w.RotateAgentKey(ctx, "a1", []byte("k3"), 2); !errors.Is(err, storage.ErrAgentRevoked) {
		t.Fatalf("rotate revoked: %v", err)
	}
	if err := w.RotateAgentKey(ctx, "zz", []byte("k4"), 2); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("rotate unknown: %v", err)
	}
	all, err := db.Reader().ListAgents(ctx)
	if err != nil || len(all) != 1 || len(all[0].Labels) != 2 {
		t.Fatalf("list: %+v %v", all, err)
	}
}

func TestConfigSyncTracking(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	w := db.Writer()
	if err := w.InsertAgent(ctx, storage.Agent{ID: "a1", KeyHash: []byte("k1"), CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.SetDesiredConfig(ctx, "a1", "s1", 10); err != nil {
		t.Fatal(err)
	}
	if err := w.SetConfigSyncError(ctx, "a1", "send_failed", "boom", 11); err != nil {
		t.Fatal(err)
	}
	if err := w.SetAppliedConfig(ctx, "a1", "s0", 12); err != nil {
		t.Fatal(err)
	}
	a, _ := db.Reader().GetAgent(ctx, "a1")
	if a.LastConfigSyncErrorKind == nil {
		t.Fatal("an ack of an older snapshot cleared the error")
	}
	if err := w.SetAppliedConfig(ctx, "a1", "s1", 13); err != nil {
		t.Fatal(err)
	}
	a, _ = db.Reader().GetAgent(ctx, "a1")
	if a.LastConfigSyncErrorKind != nil || *a.AppliedConfigSnapshotID != "s1" {
		t.Fatalf("ack of the desired snapshot: %+v", a)
	}
	if err := w.SetDesiredConfig(ctx, "a1", "s1", 20); err != nil {
		t.Fatal(err)
	}
	if a, _ = db.Reader().GetAgent(ctx, "a1"); *a.DesiredConfigSnapshotAt != 10 || *a.LastConfigSyncAttemptAt != 20 {
		t.Fatalf("same desired snapshot moved desired_at: %d %d", *a.DesiredConfigSnapshotAt, *a.LastConfigSyncAttemptAt)
	}
}

func TestAgentTaskExactlyOnceBookkeeping(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	w := db.Writer()
	for _, id := range []string{"a1", "a2"} {
		if err := w.InsertAgent(ctx, storage.Agent{ID: id, KeyHash: []byte(id), CreatedAt: 1, UpdatedAt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []string{"t1", "t2", "t3"} {
		if err := w.InsertAgentTask(ctx, storage.AgentTask{ID: id, AgentID: "a1", RunID: id, Kind: storage.AgentTaskBackup,
			PayloadJSON: "{}", CreatedAt: int64(i), UpdatedAt: int64(i)}); err != nil {
			t.Fatal(err)
		}
		if err := w.MarkAgentTaskSent(ctx, id, 10+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := w.AckAgentTask(ctx, "t1", "a2", 20); err != nil || ok {
		t.Fatalf("ack by another agent: %v %v", ok, err)
	}
	if ok, err := w.AckAgentTask(ctx, "t1", "a1", 20); err != nil || !ok {
		t.Fatalf("ack: %v %v", ok, err)
	}
	if ok, _ := w.AckAgentTask(ctx, "t1", "a1", 30); ok {
		t.Fatal("second ack changed acked_at")
	}
	un, err := db.Reader().ListUnackedAgentTasks(ctx, []string{"a1"}, 11, 10)
	if err != nil || len(un) != 1 || un[0].ID != "t2" {
		t.Fatalf("unacked: %+v %v", un, err)
	}
	if un, err := db.Reader().ListUnackedAgentTasks(ctx, []string{"a2"}, 100, 10); err != nil || len(un) != 0 {
		t.Fatalf("unacked tasks of an agent that has none: %+v %v", un, err)
	}
	res := `{"status":"success"}`
	if ok, err := w.CompleteAgentTask(ctx, "t2", &res, nil, 40); err != nil || !ok {
		t.Fatalf("complete: %v %v", ok, err)
	}
	if ok, _ := w.CompleteAgentTask(ctx, "t2", &res, nil, 41); ok {
		t.Fatal("a result was recorded twice")
	}
	if ok, _ := w.RequestAgentTaskCancel(ctx, "t2", 42); ok {
		t.Fatal("cancel of a completed task")
	}
	if ok, _ := w.RequestAgentTaskCancel(ctx, "t3", 42); !ok {
		t.Fatal("cancel of an open task")
	}
	var got []string
	after, afterID := int64(0), ""
	for {
		page, err := db.Reader().ListOpenAgentTasks(ctx, "a1", after, afterID, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page[0].ID)
		after, afterID = page[0].CreatedAt, page[0].ID
	}
	if len(got) != 2 || got[0] != "t1" || got[1] != "t3" {
		t.Fatalf("open tasks paged: %v", got)
	}
	t3, _ := db.Reader().GetAgentTask(ctx, "t3")
	if t3.CancelRequestedAt == nil || *t3.CancelRequestedAt != 42 || t3.SendCount != 1 {
		t.Fatalf("t3: %+v", t3)
	}
}

// TestUpsertIngestedRunTouchesOnlyIngestedRuns: an upload may insert a new run or update a run
// uploaded before, never a run the Hub tracked (queued, dispatched to the agent, canceled before
// it was sent, run on the Hub before the job moved to the agent) or a run of another job.
func TestUpsertIngestedRunTouchesOnlyIngestedRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	w := db.Writer()
	mustExec(t, w, `INSERT INTO agents(id, key_hash, created_at, updated_at) VALUES ('a1', x'01', 1, 1)`)
	for _, j := range []string{"ajob", "other"} {
		mustExec(t, w, `INSERT INTO jobs(id, name, agent_id, spec_json, created_at, updated_at) VALUES (?, 'j', 'a1', '{}', 1, 1)`, j)
	}
	tracked := map[string]string{"queued": "queued", "running": "running", "finished": "failed", "canceled": "canceled", "hubrun": "failed"}
	for id, status := range tracked {
		mustExec(t, w, `INSERT INTO runs(id, job_id, status, started_at, error) VALUES (?, 'ajob', ?, 1, 'hub')`, id, status)
	}
	mustExec(t, w, `INSERT INTO agent_tasks(id, agent_id, run_id, status, payload_json, created_at, updated_at) VALUES ('running','a1','running','acked','{}',1,1)`)
	mustExec(t, w, `INSERT INTO agent_tasks(id, agent_id, run_id, status, payload_json, completed_at, created_at, updated_at) VALUES ('finished','a1','finished','completed','{}',2,1,1)`)
	mustExec(t, w, `INSERT INTO runs(id, job_id, status, started_at) VALUES ('elsewhere', 'other', 'failed', 1)`)

	upload := func(id, status string) bool {
		t.Helper()
		ok, err := w.UpsertIngestedRun(ctx, storage.Run{ID: id, JobID: "ajob", Status: status, StartedAt: 5, EndedAt: ptr(int64(6))}, "a1", 7)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for id, status := range tracked {
		if upload(id, storage.RunSuccess) {
			t.Errorf("upload over the Hub's %s run %q was applied", status, id)
		}
		if r, err := db.Reader().GetRun(ctx, id); err != nil || r.Status != status || r.Error == nil || *r.Error != "hub" {
			t.Errorf("run %q changed: %+v %v", id, r, err)
		}
	}
	if upload("elsewhere", storage.RunSuccess) {
		t.Error("upload over another job's run was applied")
	}
	if !upload("offline", storage.RunFailed) {
		t.Fatal("a new offline run was refused")
	}
	if !upload("offline", storage.RunSuccess) {
		t.Fatal("a repeated upload of an offline run was refused")
	}
	if r, _ := db.Reader().GetRun(ctx, "offline"); r.Status != storage.RunSuccess {
		t.Fatalf("repeated upload: status %s", r.Status)
	}
}

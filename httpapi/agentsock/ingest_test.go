package agentsock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/storage"
)

type ingestBundle struct {
	th  *testHub
	key string
}

// setupIngest serves a Hub with agent a1 and its job j1, whose spec now points at /now.
func setupIngest(t *testing.T, spec string) *ingestBundle {
	t.Helper()
	return setupIngestWith(t, newTestHub(t, hubOpts{}), spec)
}

func setupIngestOn(t *testing.T, th *testHub) *ingestBundle {
	t.Helper()
	return setupIngestWith(t, th, "")
}

func setupIngestWith(t *testing.T, th *testHub, spec string) *ingestBundle {
	t.Helper()
	key := insertAgentKey(t, th.db, "a1")
	a1 := "a1"
	if spec == "" {
		spec = `{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"local_dir","base_dir":"/now"}}`
	}
	if err := th.db.Writer().InsertJob(context.Background(), storage.Job{ID: "j1", Name: "j", AgentID: &a1, ScheduleTimezone: "UTC",
		OverlapPolicy: "queue", MissedRunPolicy: "run_once", SpecJSON: spec, CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	return &ingestBundle{th: th, key: key}
}

// upload posts one offline run; fields override the defaults of a successful run r-<id>.
func (b *ingestBundle) upload(t *testing.T, fields map[string]any) (int, string) {
	t.Helper()
	run := map[string]any{"job_id": "j1", "status": "success", "started_at": 10, "ended_at": 20,
		"events": []map[string]any{{"seq": 1, "ts": 10, "level": "info", "kind": "complete", "message": "uploaded"}}}
	for k, v := range fields {
		run[k] = v
	}
	return postIngest(t, b.th.url, b.key, map[string]any{"run": run})
}

// postIngest posts body to POST /agent/runs/ingest with the agent key (none when empty) and
// returns the status and the error code.
func postIngest(t testing.TB, hubURL, key string, body any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", hubURL+"/agent/runs/ingest", bytes.NewReader(b))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&env)
	return resp.StatusCode, env.Error
}

func (b *ingestBundle) run(t *testing.T, id string) storage.Run {
	t.Helper()
	r, err := b.th.db.Reader().GetRun(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestIngestNeverRewritesHubRuns: an upload naming a run the Hub tracks (sent to the agent and
// still running, canceled before it was sent, failed on the Hub) is refused with 409 run_conflict
// and changes nothing: not the run, its events or the snapshot index.
func TestIngestNeverRewritesHubRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupIngest(t, "")
	w := b.th.db.Writer()
	for id, status := range map[string]string{"dispatched": storage.RunRunning, "canceled": storage.RunCanceled, "hubfailed": storage.RunFailed} {
		if err := w.InsertRun(ctx, storage.Run{ID: id, JobID: "j1", Status: status, StartedAt: 5}); err != nil {
			t.Fatal(err)
		}
	}
	b.th.dispatch(t, "a1", "dispatched")

	for _, id := range []string{"dispatched", "canceled", "hubfailed"} {
		before := b.run(t, id)
		if code, e := b.upload(t, map[string]any{"id": id}); code != http.StatusConflict || e != "run_conflict" {
			t.Fatalf("upload over run %s: %d %s", id, code, e)
		}
		if after := b.run(t, id); after.Status != before.Status || after.EndedAt != nil || after.TargetSnapshotJSON != nil {
			t.Fatalf("run %s changed: %+v", id, after)
		}
		if evs, _ := b.th.db.Reader().ListRunEvents(ctx, id, 0, 10); len(evs) != 0 {
			t.Fatalf("events added to run %s: %+v", id, evs)
		}
		if _, err := b.th.db.Reader().GetRunArtifact(ctx, "j1", id); err == nil {
			t.Fatalf("run %s got a snapshot", id)
		}
	}
	// A run the agent uploaded itself may be uploaded again (a lost answer).
	for range 2 {
		if code, e := b.upload(t, map[string]any{"id": "offline-1"}); code != http.StatusNoContent {
			t.Fatalf("upload of an offline run: %d %s", code, e)
		}
	}
}

// TestIngestRecordsWhereTheAgentRan: the snapshot of an offline run is indexed where the agent
// wrote it (the target it sends, else summary.target), not where the job's spec points by the
// time of the upload; a failed run's location is recorded too, for incomplete-run cleanup.
func TestIngestRecordsWhereTheAgentRan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupIngest(t, "")
	artifactAt := func(id string) string {
		t.Helper()
		a, err := b.th.db.Reader().GetRunArtifact(ctx, "j1", id)
		if err != nil {
			t.Fatalf("snapshot of %s: %v", id, err)
		}
		if r := b.run(t, id); r.TargetSnapshotJSON == nil || *r.TargetSnapshotJSON != a.TargetSnapshotJSON || a.NodeID != "a1" {
			t.Fatalf("run %s target %v, snapshot %+v", id, r.TargetSnapshotJSON, a)
		}
		return a.TargetSnapshotJSON
	}

	t.Run("SentTarget", func(t *testing.T) {
		if code, e := b.upload(t, map[string]any{"id": "sent", "target": map[string]string{"type": "local_dir", "base_dir": "/then"}}); code != 204 {
			t.Fatalf("upload: %d %s", code, e)
		}
		if got := artifactAt("sent"); !strings.Contains(got, `"base_dir":"/then"`) || !strings.Contains(got, `"node_id":"a1"`) {
			t.Fatalf("snapshot at %s", got)
		}
	})
	t.Run("SummaryTargetOfAnOlderAgent", func(t *testing.T) {
		sum := map[string]any{"target": map[string]string{"type": "local_dir", "run_dir": "/old/j1/old-run"}, "artifact_format": "raw_tree_v1"}
		if code, e := b.upload(t, map[string]any{"id": "old-run", "summary": sum}); code != 204 {
			t.Fatalf("upload: %d %s", code, e)
		}
		if got := artifactAt("old-run"); !strings.Contains(got, `"base_dir":"/old"`) {
			t.Fatalf("snapshot at %s", got)
		}
		if a, _ := b.th.db.Reader().GetRunArtifact(ctx, "j1", "old-run"); a.ArtifactFormat != "raw_tree_v1" {
			t.Fatalf("format %s, want the one the agent wrote", a.ArtifactFormat)
		}
	})
	t.Run("SizesFromTheSummary", func(t *testing.T) {
		sum := map[string]any{"metrics": map[string]any{"source_total": map[string]int{"files": 7, "dirs": 2, "bytes": 4096}, "transfer_total_bytes": 1500}}
		if code, e := b.upload(t, map[string]any{"id": "sized", "summary": sum, "target": map[string]string{"type": "local_dir", "base_dir": "/then"}}); code != 204 {
			t.Fatalf("upload: %d %s", code, e)
		}
		a, err := b.th.db.Reader().GetRunArtifact(ctx, "j1", "sized")
		if err != nil || a.SourceFiles == nil || *a.SourceFiles != 7 || *a.SourceDirs != 2 || *a.SourceBytes != 4096 ||
			a.TransferBytes == nil || *a.TransferBytes != 1500 {
			t.Fatalf("sizes of an offline snapshot: %+v %v", a, err)
		}
	})
	t.Run("FailedRunForCleanup", func(t *testing.T) {
		if code, e := b.upload(t, map[string]any{"id": "broken", "status": "failed", "error": "target full",
			"target": map[string]string{"type": "local_dir", "base_dir": "/then"}}); code != 204 {
			t.Fatalf("upload: %d %s", code, e)
		}
		if r := b.run(t, "broken"); r.TargetSnapshotJSON == nil || !strings.Contains(*r.TargetSnapshotJSON, `"base_dir":"/then"`) {
			t.Fatalf("failed run's target: %v", r.TargetSnapshotJSON)
		}
		if _, err := b.th.db.Reader().GetRunArtifact(ctx, "j1", "broken"); err == nil {
			t.Fatal("a failed run was indexed as a snapshot")
		}
		cands, err := b.th.db.Reader().ListCleanupCandidates(ctx, 1<<40, 10)
		if err != nil || len(cands) != 1 || cands[0].RunID != "broken" || cands[0].NodeID != "a1" {
			t.Fatalf("cleanup candidates %+v %v", cands, err)
		}
	})
	t.Run("InvalidTarget", func(t *testing.T) {
		for _, tg := range []map[string]string{
			{"type": "local_dir", "base_dir": "relative"},
			{"type": "local_dir", "base_dir": "/a/../b"},
			{"type": "webdav", "base_url": "https://user:pw@dav.example/b/", "secret_name": "nas"},
			{"type": "s3", "base_url": "https://s3.example/"},
			// An S3 location an agent names must be one a job spec could name too.
			{"type": "s3", "endpoint": "https://key:secret@s3.example", "bucket": "bkt", "secret_name": "k"},
			{"type": "s3", "endpoint": "file:///etc", "bucket": "bkt", "secret_name": "k"},
			{"type": "s3", "endpoint": "https://s3.example/?redirect=https://evil.example", "bucket": "bkt", "secret_name": "k"},
			{"type": "s3", "endpoint": "https://s3.example", "bucket": "../bkt", "secret_name": "k"},
			{"type": "s3", "endpoint": "https://s3.example", "bucket": "bkt", "prefix": "../../other", "secret_name": "k"},
			{"type": "s3", "endpoint": "https://s3.example", "bucket": "bkt", "secret_name": strings.Repeat("k", 200)},
		} {
			if code, e := b.upload(t, map[string]any{"id": "bad-target", "target": tg}); code != 400 || e != "invalid_run" {
				t.Fatalf("target %v: %d %s", tg, code, e)
			}
		}
	})
}

// TestIngestWebDAVSummaryTarget: an older agent's WebDAV run is placed by summary.target's URL,
// with the job's secret name when the job still uses that URL.
func TestIngestWebDAVSummaryTarget(t *testing.T) {
	t.Parallel()
	b := setupIngest(t, `{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"webdav","base_url":"https://dav.example/b","secret_name":"nas"}}`)
	sum := map[string]any{"target": map[string]string{"type": "webdav", "run_url": "https://dav.example/b/j1/w1/"}}
	if code, e := b.upload(t, map[string]any{"id": "w1", "summary": sum}); code != 204 {
		t.Fatalf("upload: %d %s", code, e)
	}
	r := b.run(t, "w1")
	if r.TargetSnapshotJSON == nil || !strings.Contains(*r.TargetSnapshotJSON, `"base_url":"https://dav.example/b/"`) ||
		!strings.Contains(*r.TargetSnapshotJSON, `"secret_name":"nas"`) {
		t.Fatalf("target %v", r.TargetSnapshotJSON)
	}
}

package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/storage"
)

// localBackup backs src up into a local target in baseDir with the real pipeline and returns the
// job's spec, as JSON and parsed, and the run's summary.
func localBackup(t *testing.T, jobID, runID, src, baseDir string, startedAt time.Time) ([]byte, *jobspec.Spec, backup.Summary) {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{src}},
		"target": map[string]any{"type": "local_dir", "base_dir": baseDir, "part_size_bytes": 1 << 20}})
	spec, err := jobspec.ParseAndValidate(raw)
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := localdir.New(baseDir)
	sum, err := backup.Run(context.Background(), backup.Request{JobID: jobID, RunID: runID, StartedAt: startedAt, Spec: spec,
		Target: tg, StagingDir: filepath.Join(t.TempDir(), "st"), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return raw, spec, sum
}

// realSnapshot backs src up into a local target with the real pipeline and indexes the run and
// its snapshot as the run queue would.
func (bh *backupHub) realSnapshot(t *testing.T, jobID, runID, src, baseDir string) {
	t.Helper()
	_, spec, sum := localBackup(t, jobID, runID, src, baseDir, bh.Clock.Now())
	sj, _ := json.Marshal(sum)
	snap, _ := json.Marshal(opener.FromSpec("hub", spec.Target))
	ended := bh.Clock.Now().Unix()
	ctx := context.Background()
	err := bh.DB.Write(ctx, func(q storage.Q) error {
		s, ts := string(sj), string(snap)
		if err := q.InsertRun(ctx, storage.Run{ID: runID, JobID: jobID, Status: storage.RunSuccess, StartedAt: ended, EndedAt: &ended,
			SummaryJSON: &s, TargetSnapshotJSON: &ts}); err != nil {
			return err
		}
		return q.UpsertRunArtifact(ctx, storage.RunArtifact{RunID: runID, JobID: jobID, NodeID: "hub", TargetType: "local_dir",
			TargetSnapshotJSON: ts, ArtifactFormat: "archive_v1", Status: storage.SnapshotPresent, StartedAt: ended, EndedAt: ended,
			CreatedAt: ended, UpdatedAt: ended})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRestoreVerifyAndBrowseAPI(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job, run := uuidN(1, 1), uuidN(2, 1)
	bh.insertJob(t, job, fsSpec)
	src, base := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "bk")
	testtool.BuildTree(t, src, 2<<20)
	bh.realSnapshot(t, job, run, src, base)

	t.Run("Restore", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "new", "dir")
		st, body := bh.c.Post(t, "/api/runs/"+run+"/restore", map[string]any{
			"destination":     map[string]any{"type": "local_fs", "node_id": "hub", "directory": dest},
			"conflict_policy": "overwrite",
		})
		if st != http.StatusOK || body["op_id"] == nil {
			t.Fatalf("restore: %d %v", st, body)
		}
		op := bh.waitOperation(t, body["op_id"].(string))
		if op["status"] != "success" || op["kind"] != "restore" || op["subject_id"] != run || op["error"] != nil {
			t.Fatalf("operation: %v", op)
		}
		testtool.CompareTrees(t, src, testtool.ArchivePath(dest, src), false)
		if p := op["progress"].(map[string]any); p["kind"] != "restore" || p["stage"] != "restore" {
			t.Fatalf("progress: %v", p)
		}
		evs := bh.c.Do(t, "GET", "/api/operations/"+op["id"].(string)+"/events", nil).JSONArray(t)
		var kinds []string
		for _, e := range evs {
			kinds = append(kinds, e.(map[string]any)["kind"].(string))
		}
		if strings.Join(kinds, ",") != "start,manifest,complete" {
			t.Fatalf("events: %v", kinds)
		}
		ops := bh.c.Do(t, "GET", "/api/runs/"+run+"/operations", nil).JSONArray(t)
		if len(ops) == 0 || ops[0].(map[string]any)["id"] != op["id"] {
			t.Fatalf("run operations: %v", ops)
		}
	})

	t.Run("LegacyDestinationDirAndSelection", func(t *testing.T) {
		dest := t.TempDir()
		sel := strings.TrimPrefix(filepath.Join(src, "small"), "/")
		st, body := bh.c.Post(t, "/api/runs/"+run+"/restore", map[string]any{
			"destination_dir": dest, "conflict_policy": "skip", "selection": map[string]any{"files": []string{}, "dirs": []string{sel}},
		})
		if st != http.StatusOK {
			t.Fatalf("restore: %d %v", st, body)
		}
		if op := bh.waitOperation(t, body["op_id"].(string)); op["status"] != "success" {
			t.Fatalf("operation: %v", op)
		}
		testtool.CompareTrees(t, filepath.Join(src, "small"), filepath.Join(dest, sel), false)
	})

	t.Run("BadRequests", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "a-file")
		os.WriteFile(file, nil, 0o600)
		for _, tc := range []struct {
			name  string
			body  any
			code  string
			field string
		}{
			{"NoDestination", map[string]any{"conflict_policy": "overwrite"}, "invalid_destination", "destination"},
			{"Relative", map[string]any{"destination": map[string]any{"type": "local_fs", "node_id": "hub", "directory": "restore/here"}}, "invalid_destination", "destination.directory"},
			{"File", map[string]any{"destination": map[string]any{"type": "local_fs", "node_id": "hub", "directory": file}}, "invalid_destination", "destination.directory"},
			{"WebDAVNoSecret", map[string]any{"destination": map[string]any{"type": "webdav", "base_url": "https://dav/x", "secret_name": "s", "prefix": "p"}}, "missing_webdav_secret", "destination.secret_name"},
			{"WebDAVPrefix", map[string]any{"destination": map[string]any{"type": "webdav", "base_url": "https://dav/x", "secret_name": "s", "prefix": "a/../../b"}}, "invalid_destination", "destination.prefix"},
			{"WebDAVBaseURL", map[string]any{"destination": map[string]any{"type": "webdav", "base_url": "ftp://dav/x", "secret_name": "s"}}, "invalid_destination", "destination.base_url"},
			{"Policy", map[string]any{"destination": map[string]any{"type": "local_fs", "directory": "/tmp/x"}, "conflict_policy": "replace"}, "invalid_conflict_policy", "conflict_policy"},
			{"Selection", map[string]any{"destination": map[string]any{"type": "local_fs", "directory": "/tmp/x"}, "selection": map[string]any{"files": []string{"/"}, "dirs": []string{".."}}}, "invalid_selection", "selection"},
			{"UnknownField", map[string]any{"destination_dir": "/tmp/x", "overwrite": true}, "invalid_json", "overwrite"},
		} {
			resp := bh.c.Do(t, "POST", "/api/runs/"+run+"/restore", tc.body)
			var e struct {
				Error   string `json:"error"`
				Details struct {
					Field string `json:"field"`
				} `json:"details"`
			}
			resp.Decode(t, &e)
			if resp.Status != http.StatusBadRequest || e.Error != tc.code || e.Details.Field != tc.field {
				t.Errorf("%s: %s, want 400 %s on %s", tc.name, resp, tc.code, tc.field)
			}
		}
		failed := uuidN(3, 1)
		bh.DB.Writer().InsertRun(context.Background(), storage.Run{ID: failed, JobID: job, Status: storage.RunFailed, StartedAt: 1})
		for _, path := range []string{"/api/runs/" + failed + "/restore", "/api/runs/" + failed + "/verify"} {
			resp := bh.c.Do(t, "POST", path, map[string]any{"destination_dir": "/tmp/x"})
			if path == "/api/runs/"+failed+"/verify" {
				resp = bh.c.Do(t, "POST", path, nil)
			}
			if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_run" {
				t.Errorf("%s of a failed run: %s", path, resp)
			}
		}
		for _, tc := range []struct{ method, path, code string }{
			{"POST", "/api/runs/" + uuidN(9, 9) + "/verify", "run_not_found"},
			{"GET", "/api/runs/" + uuidN(9, 9) + "/operations", "run_not_found"},
			{"GET", "/api/operations/" + uuidN(9, 9), "operation_not_found"},
			{"GET", "/api/operations/" + uuidN(9, 9) + "/events", "operation_not_found"},
			{"POST", "/api/operations/" + uuidN(9, 9) + "/cancel", "operation_not_found"},
		} {
			if resp := bh.c.Do(t, tc.method, tc.path, nil); resp.Status != http.StatusNotFound || resp.ErrorCode() != tc.code {
				t.Errorf("%s %s: %s", tc.method, tc.path, resp)
			}
		}
	})

	t.Run("Entries", func(t *testing.T) {
		prefix := strings.TrimPrefix(filepath.Join(src, "small"), "/")
		st, body := bh.c.Get(t, "/api/runs/"+run+"/entries?limit=5&prefix="+prefix)
		if st != http.StatusOK || body["total"].(float64) != 7 || len(body["entries"].([]any)) != 5 || body["next_cursor"].(float64) != 5 {
			t.Fatalf("entries: %d %v", st, body)
		}
		st, body = bh.c.Get(t, "/api/runs/"+run+"/entries?limit=5&cursor=5&prefix="+prefix)
		if st != http.StatusOK || len(body["entries"].([]any)) != 2 || body["next_cursor"] != nil || body["cursor"].(float64) != 5 {
			t.Fatalf("second page: %d %v", st, body)
		}
		top := strings.TrimPrefix(src, "/")
		st, body = bh.c.Get(t, "/api/runs/"+run+"/entries?kind=file&files_first=true&q=EXEC&prefix="+top)
		if st != http.StatusOK || len(body["entries"].([]any)) != 1 || body["entries"].([]any)[0].(map[string]any)["name"] != "exec.sh" {
			t.Fatalf("filtered: %d %v", st, body)
		}
		if _, err := os.Stat(filepath.Join(bh.dataDir, "cache", "entries", run, operations.IndexName)); err != nil {
			t.Fatalf("index not cached: %v", err)
		}
		for q, code := range map[string]string{"cursor=x": "invalid_cursor", "limit=0": "invalid_limit", "kind=socket": "invalid_kind", "hide_dotfiles=perhaps": "invalid_hide_dotfiles"} {
			if resp := bh.c.Do(t, "GET", "/api/runs/"+run+"/entries?"+q, nil); resp.Status != http.StatusBadRequest || resp.ErrorCode() != code {
				t.Errorf("%s: %s", q, resp)
			}
		}
	})

	t.Run("VerifyThenCorrupt", func(t *testing.T) {
		st, body := bh.c.Post(t, "/api/runs/"+run+"/verify", nil)
		if st != http.StatusOK {
			t.Fatalf("verify: %d %v", st, body)
		}
		op := bh.waitOperation(t, body["op_id"].(string))
		sum, _ := op["summary"].(map[string]any)
		if op["status"] != "success" || op["kind"] != "verify" || sum["ok"] != true || sum["files_failed"].(float64) != 0 {
			t.Fatalf("verify: %v", op)
		}
		part := filepath.Join(base, job, run, "payload.part000002")
		f, err := os.OpenFile(part, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte{0xff, 0x00, 0xff}, 4096)
		f.Close()
		_, body = bh.c.Post(t, "/api/runs/"+run+"/verify", nil)
		op = bh.waitOperation(t, body["op_id"].(string))
		if op["status"] != "failed" || !strings.Contains(op["error"].(string), "payload.part000002") {
			t.Fatalf("verify of a corrupted part: %v", op)
		}
		evs := bh.c.Do(t, "GET", "/api/operations/"+op["id"].(string)+"/events", nil).JSONArray(t)
		last := evs[len(evs)-1].(map[string]any)
		if last["kind"] != "failed" || last["level"] != "error" || !strings.Contains(last["message"].(string), "payload.part000002") {
			t.Fatalf("failed event: %v", last)
		}
		// A finished operation cannot be canceled: cancel returns it unchanged.
		st, c := bh.c.Post(t, "/api/operations/"+op["id"].(string)+"/cancel", map[string]string{"reason": "late"})
		if st != http.StatusOK || c["status"] != "failed" || c["cancel_requested_at"] != nil {
			t.Fatalf("cancel of an ended operation: %d %v", st, c)
		}
	})
}

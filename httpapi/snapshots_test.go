package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/storage"
)

const fsSpec = `{"v":1,"type":"filesystem","source":{"paths":["/srv/data"]},"target":{"type":"local_dir","base_dir":"/bk"}}`

func snapshotsURL(jobID string, rest ...string) string {
	u := "/api/jobs/" + jobID + "/snapshots"
	for _, r := range rest {
		u += "/" + r
	}
	return u
}

func items(t *testing.T, body map[string]any) []map[string]any {
	t.Helper()
	raw, ok := body["items"].([]any)
	if !ok {
		t.Fatalf("no items in %v", body)
	}
	out := make([]map[string]any, len(raw))
	for i, v := range raw {
		out[i] = v.(map[string]any)
	}
	return out
}

func TestSnapshotsNeedSessionAndCSRF(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job := uuidN(1, 1)
	bh.insertJob(t, job, fsSpec)
	anon := bh.Client(t)
	if resp := anon.Do(t, "GET", snapshotsURL(job), nil); resp.Status != http.StatusUnauthorized || resp.ErrorCode() != "unauthorized" {
		t.Fatalf("anonymous list: %s", resp)
	}
	noCSRF := bh.Login(t)
	noCSRF.CSRF = ""
	for _, path := range []string{snapshotsURL(job, uuidN(2, 1), "pin"), snapshotsURL(job, "delete"), "/api/runs/" + uuidN(2, 1) + "/restore",
		"/api/operations/" + uuidN(3, 1) + "/cancel", "/api/maintenance/incomplete-cleanup/" + uuidN(2, 1) + "/ignore"} {
		if resp := noCSRF.Do(t, "POST", path, map[string]any{}); resp.Status != http.StatusUnauthorized || resp.ErrorCode() != "invalid_csrf" {
			t.Errorf("POST %s without CSRF: %s", path, resp)
		}
	}
}

func TestSnapshotListPaging(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job, other := uuidN(1, 1), uuidN(1, 2)
	bh.insertJob(t, job, fsSpec)
	bh.insertJob(t, other, fsSpec)
	base := t.TempDir()
	// 9 snapshots; runs 3 and 4 end in the same second (the run id breaks the tie).
	ends := []int64{100, 200, 300, 300, 400, 500, 600, 700, 800}
	for i, e := range ends {
		bh.seedSnapshot(t, job, uuidN(2, i), base, e, false)
	}
	bh.seedSnapshot(t, other, uuidN(3, 1), base, 900, false)

	t.Run("WalkSeesEveryRowOnceWhileStatusesChange", func(t *testing.T) {
		seen := map[string]int{}
		var order []string
		cursor := ""
		for page := 0; ; page++ {
			u := snapshotsURL(job) + "?limit=2"
			if cursor != "" {
				u += "&cursor=" + url.QueryEscape(cursor)
			}
			st, body := bh.c.Get(t, u)
			if st != http.StatusOK {
				t.Fatalf("page %d: %d %v", page, st, body)
			}
			for _, it := range items(t, body) {
				id := it["run_id"].(string)
				seen[id]++
				order = append(order, id)
				if it["job_id"] != job || it["target_snapshot"].(map[string]any)["target"].(map[string]any)["base_dir"] != base {
					t.Fatalf("item = %v", it)
				}
			}
			if page == 1 {
				// Mid-walk, rows on both sides of the cursor change status (and updated_at).
				for _, id := range []string{uuidN(2, 0), uuidN(2, 1), uuidN(2, 8)} {
					if err := bh.DB.Writer().SetSnapshotStatus(context.Background(), id, storage.SnapshotDeleting, nil, nil, 5000); err != nil {
						t.Fatal(err)
					}
				}
			}
			next, _ := body["next_cursor"].(string)
			if next == "" {
				break
			}
			cursor = next
		}
		if len(seen) != len(ends) {
			t.Fatalf("walk saw %d snapshots, want %d: %v", len(seen), len(ends), seen)
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("%s seen %d times", id, n)
			}
		}
		// Newest first; within ended_at 300 the larger run id first.
		want := []string{uuidN(2, 8), uuidN(2, 7), uuidN(2, 6), uuidN(2, 5), uuidN(2, 4), uuidN(2, 3), uuidN(2, 2), uuidN(2, 1), uuidN(2, 0)}
		if fmt.Sprint(order) != fmt.Sprint(want) {
			t.Fatalf("order = %v\nwant    %v", order, want)
		}
	})

	t.Run("StatusFilter", func(t *testing.T) {
		st, body := bh.c.Get(t, snapshotsURL(job)+"?status=deleting&limit=200")
		if st != http.StatusOK || len(items(t, body)) != 3 || body["next_cursor"] != nil {
			t.Fatalf("deleting: %d %v", st, body)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		for _, tc := range []struct{ query, code string }{
			{"?cursor=not-base64!!", "invalid_cursor"},
			{"?cursor=" + url.QueryEscape("bm9jb2xvbg"), "invalid_cursor"}, // "nocolon"
			{"?status=gone", "invalid_status"},
			{"?limit=ten", "invalid_limit"},
		} {
			resp := bh.c.Do(t, "GET", snapshotsURL(job)+tc.query, nil)
			if resp.Status != http.StatusBadRequest || resp.ErrorCode() != tc.code {
				t.Errorf("%s: %s, want 400 %s", tc.query, resp, tc.code)
			}
		}
		// Limits are clamped to 1..200.
		st, body := bh.c.Get(t, snapshotsURL(job)+"?limit=0")
		if st != http.StatusOK || len(items(t, body)) != 1 {
			t.Errorf("limit=0: %d %v", st, body)
		}
		if resp := bh.c.Do(t, "GET", snapshotsURL(uuidN(9, 9)), nil); resp.Status != http.StatusNotFound || resp.ErrorCode() != "job_not_found" {
			t.Errorf("unknown job: %s", resp)
		}
	})

	t.Run("Detail", func(t *testing.T) {
		st, body := bh.c.Get(t, snapshotsURL(job, uuidN(2, 4)))
		if st != http.StatusOK || body["run_id"] != uuidN(2, 4) || body["status"] != "present" || body["ended_at"].(float64) != 400 {
			t.Fatalf("detail: %d %v", st, body)
		}
		// A snapshot of another job is not found under this one.
		if resp := bh.c.Do(t, "GET", snapshotsURL(job, uuidN(3, 1)), nil); resp.Status != http.StatusNotFound || resp.ErrorCode() != "snapshot_not_found" {
			t.Fatalf("other job's snapshot: %s", resp)
		}
	})
}

func TestSnapshotPinAndDelete(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job := uuidN(1, 1)
	bh.insertJob(t, job, fsSpec)
	base := t.TempDir()
	a, b := uuidN(2, 1), uuidN(2, 2)
	bh.seedSnapshot(t, job, a, base, 100, true)
	bh.seedSnapshot(t, job, b, base, 200, true)

	if st, body := bh.c.Post(t, snapshotsURL(job, a, "pin"), nil); st != http.StatusNoContent {
		t.Fatalf("pin: %d %v", st, body)
	}
	_, body := bh.c.Get(t, snapshotsURL(job, a))
	if body["pinned_at"] == nil || body["pinned_by_user_id"].(float64) != 1 {
		t.Fatalf("pinned snapshot: %v", body)
	}
	resp := bh.c.Do(t, "POST", snapshotsURL(job, a, "delete"), nil)
	if resp.Status != http.StatusConflict || resp.ErrorCode() != "snapshot_pinned" {
		t.Fatalf("delete pinned: %s", resp)
	}
	if got := bh.snapshotStatus(t, job, a); got != "present" {
		t.Fatalf("refused delete changed the status to %s", got)
	}
	if st, body := bh.c.Post(t, snapshotsURL(job, a, "delete")+"?force=true", nil); st != http.StatusNoContent {
		t.Fatalf("forced delete: %d %v", st, body)
	}
	eventually(t, "snapshot deleted", func() bool { return bh.snapshotStatus(t, job, a) == storage.SnapshotDeleted })
	if _, err := os.Stat(filepath.Join(base, job, a)); !os.IsNotExist(err) {
		t.Fatalf("run directory still on the target: %v", err)
	}
	st, task := bh.c.Get(t, snapshotsURL(job, a, "delete-task"))
	if st != http.StatusOK || task["status"] != "done" || task["reason"] != "manual" || task["target_snapshot"] == nil {
		t.Fatalf("delete task: %d %v", st, task)
	}
	evs := bh.c.Do(t, "GET", snapshotsURL(job, a, "delete-events"), nil).JSONArray(t)
	if len(evs) < 2 || evs[0].(map[string]any)["kind"] != "manual_queued" || evs[len(evs)-1].(map[string]any)["kind"] != "deleted" {
		t.Fatalf("delete events: %v", evs)
	}
	// Deleting what is gone is a no-op.
	if st, _ := bh.c.Post(t, snapshotsURL(job, a, "delete"), nil); st != http.StatusNoContent {
		t.Fatalf("delete again: %d", st)
	}
	// Unpin clears the pin.
	if st, _ := bh.c.Post(t, snapshotsURL(job, b, "pin"), nil); st != http.StatusNoContent {
		t.Fatal("pin b")
	}
	if st, _ := bh.c.Post(t, snapshotsURL(job, b, "unpin"), nil); st != http.StatusNoContent {
		t.Fatal("unpin b")
	}
	if _, body := bh.c.Get(t, snapshotsURL(job, b)); body["pinned_at"] != nil {
		t.Fatalf("unpinned snapshot: %v", body)
	}
	for _, tc := range []struct{ path, code string }{
		{snapshotsURL(job, uuidN(7, 7), "pin"), "snapshot_not_found"},
		{snapshotsURL(job, uuidN(7, 7), "delete"), "snapshot_not_found"},
		{snapshotsURL(job, b, "delete") + "?force=maybe", "invalid_force"},
	} {
		resp := bh.c.Do(t, "POST", tc.path, nil)
		if resp.ErrorCode() != tc.code {
			t.Errorf("POST %s: %s, want %s", tc.path, resp, tc.code)
		}
	}
	if resp := bh.c.Do(t, "GET", snapshotsURL(job, b, "delete-task"), nil); resp.Status != http.StatusNotFound || resp.ErrorCode() != "delete_task_not_found" {
		t.Errorf("delete task of a present snapshot: %s", resp)
	}
}

func TestSnapshotBulkDelete(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job := uuidN(1, 1)
	bh.insertJob(t, job, fsSpec)
	base := t.TempDir()
	var ids []string
	for i := 0; i < 4; i++ {
		ids = append(ids, uuidN(2, i))
		bh.seedSnapshot(t, job, ids[i], base, int64(100*(i+1)), true)
	}
	bh.c.Post(t, snapshotsURL(job, ids[0], "pin"), nil)

	check := func(body any, status int, code string) {
		t.Helper()
		resp := bh.c.Do(t, "POST", snapshotsURL(job, "delete"), body)
		if resp.Status != status || resp.ErrorCode() != code {
			t.Fatalf("bulk delete %v: %s, want %d %s", body, resp, status, code)
		}
	}
	check(map[string]any{"run_ids": []string{" ", ""}}, http.StatusBadRequest, "empty_run_ids")
	many := make([]string, 201)
	for i := range many {
		many[i] = uuidN(5, i)
	}
	check(map[string]any{"run_ids": many}, http.StatusBadRequest, "too_many_run_ids")
	check(map[string]any{"run_ids": []string{ids[1], uuidN(6, 6)}}, http.StatusNotFound, "snapshot_not_found")
	check(map[string]any{"run_ids": ids}, http.StatusConflict, "snapshot_pinned")
	for _, id := range ids {
		if got := bh.snapshotStatus(t, job, id); got != "present" {
			t.Fatalf("a refused bulk delete queued %s (%s)", id, got)
		}
	}
	check(map[string]any{"run_ids": append(ids, ids[1]), "force": true}, http.StatusNoContent, "")
	for _, id := range ids {
		eventually(t, "deleted "+id, func() bool { return bh.snapshotStatus(t, job, id) == storage.SnapshotDeleted })
	}
}

func TestDeleteTaskRetryAndIgnore(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job := uuidN(1, 1)
	bh.insertJob(t, job, fsSpec)
	base := t.TempDir()
	run := uuidN(2, 1)
	bh.seedSnapshot(t, job, run, base, 100, false)
	// A directory without Bastion's files where the run should be: the local target refuses
	// to delete it (config error), so the task is blocked and the snapshot in error.
	dir := filepath.Join(base, job, run)
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "someone-elses-file"), []byte("x"), 0o600)
	if st, _ := bh.c.Post(t, snapshotsURL(job, run, "delete"), nil); st != http.StatusNoContent {
		t.Fatal("delete")
	}
	eventually(t, "task blocked", func() bool {
		tk, err := bh.DB.Reader().GetTask(context.Background(), storage.DeleteQueue, run)
		return err == nil && tk.Status == storage.TaskBlocked
	})
	if got := bh.snapshotStatus(t, job, run); got != storage.SnapshotError {
		t.Fatalf("snapshot status %s, want error", got)
	}
	_, task := bh.c.Get(t, snapshotsURL(job, run, "delete-task"))
	if task["last_error_kind"] != "config" || task["attempts"].(float64) != 1 {
		t.Fatalf("blocked task: %v", task)
	}
	if st, body := bh.c.Post(t, snapshotsURL(job, run, "delete", "ignore"), map[string]string{"reason": "  keep it, it is not ours  "}); st != http.StatusNoContent {
		t.Fatalf("ignore: %d %v", st, body)
	}
	_, task = bh.c.Get(t, snapshotsURL(job, run, "delete-task"))
	if task["status"] != "ignored" || task["ignore_reason"] != "keep it, it is not ours" || task["ignored_by_user_id"].(float64) != 1 {
		t.Fatalf("ignored task: %v", task)
	}
	// A second ignore is refused (ignored is not ignorable).
	if resp := bh.c.Do(t, "POST", snapshotsURL(job, run, "delete", "ignore"), nil); resp.Status != http.StatusConflict || resp.ErrorCode() != "not_ignorable" {
		t.Fatalf("ignore again: %s", resp)
	}
	// Fix the target, retry now: the delete goes through.
	os.Remove(filepath.Join(dir, "someone-elses-file"))
	if st, body := bh.c.Post(t, snapshotsURL(job, run, "delete", "retry-now"), nil); st != http.StatusNoContent {
		t.Fatalf("retry-now: %d %v", st, body)
	}
	eventually(t, "snapshot gone", func() bool {
		s := bh.snapshotStatus(t, job, run)
		return s == storage.SnapshotDeleted || s == storage.SnapshotMissing
	})
	// A running task refuses both actions.
	if _, err := bh.DB.Writer().Exec(context.Background(), `UPDATE artifact_delete_tasks SET status = 'running' WHERE run_id = ?`, run); err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"retry-now", "ignore"} {
		if resp := bh.c.Do(t, "POST", snapshotsURL(job, run, "delete", action), nil); resp.Status != http.StatusConflict || resp.ErrorCode() != "task_running" {
			t.Errorf("%s while running: %s", action, resp)
		}
	}
}

func TestRetentionAPI(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job := uuidN(1, 1)
	bh.insertJob(t, job, fsSpec)
	base := t.TempDir()
	now := bh.Clock.Now().Unix()
	// 6 snapshots, one a day, the newest ending now; the oldest is pinned.
	var ids []string
	for i := 0; i < 6; i++ {
		ids = append(ids, uuidN(2, i))
		bh.seedSnapshot(t, job, ids[i], base, now-int64(5-i)*86400, true)
	}
	bh.c.Post(t, snapshotsURL(job, ids[0], "pin"), nil)

	st, pol := bh.c.Get(t, "/api/jobs/"+job+"/retention")
	if st != http.StatusOK || pol["enabled"] != false || pol["max_delete_per_tick"].(float64) != 50 || pol["max_delete_per_day"].(float64) != 200 {
		t.Fatalf("default retention: %d %v", st, pol)
	}
	for _, bad := range []any{
		map[string]any{"enabled": true},                  // needs keep_last or keep_days
		map[string]any{"enabled": true, "keep_last": -1}, // out of range
		map[string]any{"keep_everything": true},          // unknown field
		[]int{1},
	} {
		resp := bh.c.Do(t, "PUT", "/api/jobs/"+job+"/retention", bad)
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_retention" {
			t.Errorf("PUT %v: %s", bad, resp)
		}
	}
	if resp := bh.c.Do(t, "PUT", "/api/jobs/"+job+"/retention", map[string]any{"enabled": true, "keep_last": 2, "max_delete_per_tick": 2, "max_delete_per_day": 3}); resp.Status != http.StatusNoContent || len(resp.Body) != 0 {
		t.Fatalf("PUT retention (204, no body, as the original): %s", resp)
	}
	if _, pol = bh.c.Get(t, "/api/jobs/"+job+"/retention"); pol["enabled"] != true || pol["keep_days"] != nil || pol["max_delete_per_tick"].(float64) != 2 {
		t.Fatalf("saved retention: %v", pol)
	}
	j, _ := bh.DB.Reader().GetJob(context.Background(), job)
	if want := `"/srv/data"`; !strings.Contains(j.SpecJSON, want) || !strings.Contains(j.SpecJSON, `"keep_last":2`) {
		t.Fatalf("spec after PUT lost fields: %s", j.SpecJSON)
	}

	// Preview: keep the pinned one and the 2 newest, delete 3; with an override, other numbers.
	st, pv := bh.c.Post(t, "/api/jobs/"+job+"/retention/preview", nil)
	if st != http.StatusOK || pv["keep_total"].(float64) != 3 || pv["delete_total"].(float64) != 3 {
		t.Fatalf("preview: %d %v", st, pv)
	}
	del := pv["delete"].([]any)
	if first := del[0].(map[string]any); first["run_id"] != ids[1] || first["reasons"].([]any)[0] != "delete" || first["source_bytes"] == nil {
		t.Fatalf("preview delete list (oldest first): %v", del)
	}
	st, pv = bh.c.Post(t, "/api/jobs/"+job+"/retention/preview", map[string]any{"retention": map[string]any{"enabled": true, "keep_days": 10}})
	if st != http.StatusOK || pv["delete_total"].(float64) != 0 || pv["retention"].(map[string]any)["keep_days"].(float64) != 10 {
		t.Fatalf("preview with override: %d %v", st, pv)
	}
	if resp := bh.c.Do(t, "POST", "/api/jobs/"+job+"/retention/preview", map[string]any{"retention": map[string]any{"enabled": true}}); resp.ErrorCode() != "invalid_retention" {
		t.Fatalf("preview with an invalid override: %s", resp)
	}
	// Preview changed nothing.
	for _, id := range ids {
		if s := bh.snapshotStatus(t, job, id); s != "present" {
			t.Fatalf("preview changed %s to %s", id, s)
		}
	}
	if n := countRows(t, bh.DB, "artifact_delete_tasks"); n != 0 {
		t.Fatalf("preview queued %d deletes", n)
	}

	// Apply obeys max_delete_per_tick (2), then what is left of max_delete_per_day (3 - 2 = 1).
	st, res := bh.c.Post(t, "/api/jobs/"+job+"/retention/apply", nil)
	if st != http.StatusOK || len(res["enqueued"].([]any)) != 2 || res["skipped_due_to_limits"].(float64) != 1 {
		t.Fatalf("apply: %d %v", st, res)
	}
	st, res = bh.c.Post(t, "/api/jobs/"+job+"/retention/apply", map[string]any{})
	if st != http.StatusOK || len(res["enqueued"].([]any)) != 1 || res["skipped_due_to_limits"].(float64) != 0 {
		t.Fatalf("second apply: %d %v", st, res)
	}
	for i, id := range ids {
		want := []string{"present", "deleted", "deleted", "deleted", "present", "present"}[i]
		eventually(t, id+" "+want, func() bool { return bh.snapshotStatus(t, job, id) == want })
	}
	if resp := bh.c.Do(t, "POST", "/api/jobs/"+job+"/retention/apply", map[string]any{"retention": map[string]any{"enabled": false}}); resp.Status != http.StatusBadRequest || resp.ErrorCode() != "retention_disabled" {
		t.Fatalf("apply disabled: %s", resp)
	}
}

func TestIncompleteCleanupAPI(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job := uuidN(1, 1)
	bh.insertJob(t, job, fsSpec)
	ctx := context.Background()
	for i, tt := range []string{"local_dir", "webdav", "local_dir"} {
		if _, err := bh.DB.Writer().EnqueueTask(ctx, storage.CleanupQueue, storage.Task{RunID: uuidN(2, i), JobID: job, NodeID: "hub",
			TargetType: tt, TargetSnapshotJSON: `{"node_id":"hub","target":{"type":"` + tt + `"}}`, NextAttemptAt: 10, CreatedAt: int64(10 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	st, body := bh.c.Get(t, "/api/maintenance/incomplete-cleanup")
	if st != http.StatusOK || body["total"].(float64) != 3 || len(items(t, body)) != 3 {
		t.Fatalf("list: %d %v", st, body)
	}
	st, body = bh.c.Get(t, "/api/maintenance/incomplete-cleanup?target_type=webdav&page=1&page_size=10")
	if st != http.StatusOK || body["total"].(float64) != 1 || items(t, body)[0]["run_id"] != uuidN(2, 1) || body["page_size"].(float64) != 10 {
		t.Fatalf("filtered: %d %v", st, body)
	}
	st, body = bh.c.Get(t, "/api/maintenance/incomplete-cleanup?page=2&page_size=2")
	if st != http.StatusOK || len(items(t, body)) != 1 || body["total"].(float64) != 3 {
		t.Fatalf("page 2: %d %v", st, body)
	}
	for q, code := range map[string]string{"?page=0": "invalid_page", "?page_size=0": "invalid_page_size", "?status=nope": "invalid_status", "?target_type=ftp": "invalid_target_type"} {
		if resp := bh.c.Do(t, "GET", "/api/maintenance/incomplete-cleanup"+q, nil); resp.Status != http.StatusBadRequest || resp.ErrorCode() != code {
			t.Errorf("%s: %s", q, resp)
		}
	}
	run := uuidN(2, 0)
	p := "/api/maintenance/incomplete-cleanup/" + run
	if resp := bh.c.Do(t, "POST", p+"/unignore", nil); resp.Status != http.StatusConflict || resp.ErrorCode() != "not_ignored" {
		t.Fatalf("unignore a queued task: %s", resp)
	}
	if st, _ := bh.c.Post(t, p+"/ignore", map[string]string{"reason": "test"}); st != http.StatusNoContent {
		t.Fatal("ignore")
	}
	if st, _ := bh.c.Post(t, p+"/unignore", nil); st != http.StatusNoContent {
		t.Fatal("unignore")
	}
	if st, _ := bh.c.Post(t, p+"/retry-now", nil); st != http.StatusNoContent {
		t.Fatal("retry-now")
	}
	st, body = bh.c.Get(t, p)
	if st != http.StatusOK {
		t.Fatalf("detail: %d %v", st, body)
	}
	task := body["task"].(map[string]any)
	var kinds []string
	for _, e := range body["events"].([]any) {
		kinds = append(kinds, e.(map[string]any)["kind"].(string))
	}
	if task["status"] != "queued" || task["attempts"].(float64) != 0 || fmt.Sprint(kinds) != "[ignored unignored retry_now]" {
		t.Fatalf("task after actions: %v events %v", task, kinds)
	}
	if resp := bh.c.Do(t, "GET", "/api/maintenance/incomplete-cleanup/"+uuidN(9, 9), nil); resp.Status != http.StatusNotFound || resp.ErrorCode() != "cleanup_task_not_found" {
		t.Fatalf("unknown: %s", resp)
	}
}

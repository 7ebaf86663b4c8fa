package httpapi_test

// The values behind the original's fields of the runs and jobs aggregates (issue 13): the
// contract pins their names, these tests what they mean, after the original's
// runs_workspace_tests.rs and jobs_workspace_tests.rs.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

const davSpec = `{"v":1,"type":"filesystem","source":{"paths":["/srv/db"]},"target":{"type":"webdav","base_url":"https://dav.example.com/backups","secret_name":"dav-main"}}`

// seedScopedRuns makes a Hub job with a successful run an hour ago and an agent job with a
// failed run (progress of a backup at its upload stage) 200 s ago, another failed one ten days
// ago and a restore-kind one; it returns the agent job's recent failed run.
func seedScopedRuns(t *testing.T, bh *jobsHub) (hubJob, agentJob, failed string) {
	t.Helper()
	ctx := context.Background()
	now := bh.Clock.Now().Unix()
	hubJob, agentJob, failed = uuidN(41, 1), uuidN(41, 2), uuidN(42, 2)
	addJob(t, bh.Hub, hubJob, fsSpec)
	addJob(t, bh.Hub, agentJob, fsSpec)
	boom := "upload_failed"
	backup, restore := `{"v":1,"kind":"backup","stage":"upload"}`, `{"kind":"restore"}`
	err := bh.DB.Write(ctx, func(q storage.Q) error {
		if _, err := q.Exec(ctx, `INSERT INTO agents(id, name, key_hash, created_at, updated_at) VALUES ('agent-1', 'Agent One', x'01', 1, 1)`); err != nil {
			return err
		}
		if _, err := q.Exec(ctx, `UPDATE jobs SET agent_id = 'agent-1', name = 'Agent job' WHERE id = ?`, agentJob); err != nil {
			return err
		}
		for _, r := range []storage.Run{
			{ID: uuidN(42, 1), JobID: hubJob, Status: storage.RunSuccess, StartedAt: now - 3600, EndedAt: ptr(now - 3500)},
			{ID: failed, JobID: agentJob, Status: storage.RunFailed, StartedAt: now - 200, EndedAt: ptr(now - 120), Error: &boom, ProgressJSON: &backup},
			{ID: uuidN(42, 3), JobID: agentJob, Status: storage.RunFailed, StartedAt: now - 10*86400, Error: &boom},
			{ID: uuidN(42, 4), JobID: agentJob, Status: storage.RunSuccess, StartedAt: now - 100, ProgressJSON: &restore},
		} {
			if err := q.InsertRun(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hubJob, agentJob, failed
}

func ptr[T any](v T) *T { return &v }

func addJob(t *testing.T, h *apitest.Hub, id, specJSON string) {
	t.Helper()
	now := h.Clock.Now().Unix()
	if err := h.DB.Writer().InsertJob(context.Background(), storage.Job{ID: id, Name: "job " + id[:8], ScheduleTimezone: "UTC",
		OverlapPolicy: "queue", MissedRunPolicy: "skip", SpecJSON: specJSON, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
}

func TestRunsListOriginalFilters(t *testing.T) {
	t.Parallel()
	bh := startJobsHub(t)
	_, agentJob, failed := seedScopedRuns(t, bh)

	// The original's own request (runs_workspace_tests.rs list_runs_workspace_filters_by_scope_and_status).
	st, body := bh.c.Get(t, "/api/runs?scope=agent:agent-1&status=failed&range=24h")
	if st != http.StatusOK {
		t.Fatalf("status %d: %v", st, body)
	}
	scope := body["scope"].(map[string]any)
	filters := body["filters"].(map[string]any)
	if scope["requested"] != "agent:agent-1" || scope["effective"] != "agent:agent-1" || filters["status"] != "failed" ||
		filters["range"] != "24h" || filters["kind"] != "all" || filters["q"] != "" || body["total"] != 1.0 {
		t.Fatalf("scope %v filters %v total %v", scope, filters, body["total"])
	}
	its := items(t, body)
	if len(its) != 1 || its[0]["id"] != failed || its[0]["job_name"] != "Agent job" || its[0]["scope"] != "agent:agent-1" ||
		its[0]["node_name"] != "Agent One" || its[0]["kind"] != "backup" || its[0]["failure_title"] != "upload_failed" {
		t.Fatalf("items = %v", its)
	}

	// Without range every time counts (ours; the original defaults to 24h).
	if _, body := bh.c.Get(t, "/api/runs?scope=agent:agent-1&status=failed"); body["total"] != 2.0 || body["filters"].(map[string]any)["range"] != "all" {
		t.Fatalf("no range: total %v filters %v", body["total"], body["filters"])
	}
	// kind reads the progress; q matches the job name, the id or the error.
	if _, body := bh.c.Get(t, "/api/runs?kind=restore"); body["total"] != 1.0 || items(t, body)[0]["id"] != uuidN(42, 4) {
		t.Fatalf("kind=restore: %v", body)
	}
	if _, body := bh.c.Get(t, "/api/runs?kind=backup&scope=hub"); body["total"] != 1.0 || items(t, body)[0]["scope"] != "hub" {
		t.Fatalf("kind=backup&scope=hub: %v", body)
	}
	if _, body := bh.c.Get(t, "/api/runs?q=AGENT%20JOB&job_id="+agentJob); body["total"] != 3.0 || body["filters"].(map[string]any)["job_id"] != agentJob {
		t.Fatalf("q: %v", body)
	}
	if _, body := bh.c.Get(t, "/api/runs?q=%25"); body["total"] != 0.0 {
		t.Fatalf("q=%%: a %% matches itself, got total %v", body["total"])
	}

	// Numbered pages: page 2 of size 3 is the fourth run, the total counts them all.
	st, body = bh.c.Get(t, "/api/runs?page=2&page_size=3")
	if its := items(t, body); st != http.StatusOK || body["page"] != 2.0 || body["page_size"] != 3.0 || body["total"] != 4.0 ||
		len(its) != 1 || its[0]["id"] != uuidN(42, 3) {
		t.Fatalf("page 2: %d %v", st, body)
	}
	// Cursor paging still works and says page 1 on its first page.
	if _, body := bh.c.Get(t, "/api/runs?limit=2"); body["page"] != 1.0 || body["page_size"] != 2.0 || body["next_cursor"] == nil {
		t.Fatalf("cursor page: %v", body)
	}

	for _, c := range []struct{ query, code string }{
		{"?scope=nowhere", "invalid_scope"},
		{"?kind=archive", "invalid_kind"},
		{"?range=1y", "invalid_range"},
		{"?range=24h&from=5", "invalid_query"},
		{"?page=1&cursor=x", "invalid_query"},
		{"?scope=hub&node_id=hub", "invalid_query"},
	} {
		if resp := bh.c.Do(t, "GET", "/api/runs"+c.query, nil); resp.Status != http.StatusBadRequest || resp.ErrorCode() != c.code {
			t.Errorf("%s: %s, want 400 %s", c.query, resp, c.code)
		}
	}
}

func TestRunWorkspaceDiagnostics(t *testing.T) {
	t.Parallel()
	bh := startJobsHub(t)
	_, _, failed := seedScopedRuns(t, bh)
	ctx := context.Background()
	now := bh.Clock.Now().Unix()
	fields := `{"stage":"upload","hint":"check the network","error_envelope":{"kind":"transport","retriable":{"value":true}}}`
	err := bh.DB.Write(ctx, func(q storage.Q) error {
		return q.AppendRunEvents(ctx, []storage.RunEvent{
			{RunID: failed, TS: now, Level: "info", Kind: "upload_started", Message: "upload started"},
			{RunID: failed, TS: now, Level: "error", Kind: "upload_failed", Message: "WebDAV upload failed", FieldsJSON: &fields},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	st, body := bh.c.Get(t, "/api/runs/"+failed+"/workspace")
	if st != http.StatusOK {
		t.Fatalf("status %d: %v", st, body)
	}
	run := body["run"].(map[string]any)
	diag := body["diagnostics"].(map[string]any)
	caps := body["capabilities"].(map[string]any)
	if run["kind"] != "backup" || run["scope"] != "agent:agent-1" || run["id"] != failed {
		t.Errorf("run = %v", run)
	}
	if diag["state"] != "structured" || diag["failure_kind"] != "transport" || diag["failure_stage"] != "upload" ||
		diag["failure_title"] != "WebDAV upload failed" || diag["failure_hint"] != "check the network" ||
		diag["first_error_event_seq"] != 2.0 || diag["root_cause_event_seq"] != 2.0 {
		t.Errorf("diagnostics = %v", diag)
	}
	if caps["can_restore"] != false || caps["can_cancel"] != false || caps["can_verify"] != false {
		t.Errorf("capabilities = %v", caps)
	}
	if rel := body["related"].(map[string]any); rel["operations_total"] != 0.0 || rel["artifacts_total"] != 0.0 {
		t.Errorf("related = %v", rel)
	}

	// A successful run without events: fallback diagnostics, restorable by an operator, not by
	// a viewer.
	ok := uuidN(42, 1)
	_, body = bh.c.Get(t, "/api/runs/"+ok+"/workspace")
	if d := body["diagnostics"].(map[string]any); d["state"] != "fallback" || d["failure_title"] != "Run succeeded" || d["first_error_event_seq"] != nil {
		t.Errorf("success diagnostics = %v", d)
	}
	if c := body["capabilities"].(map[string]any); c["can_restore"] != true || c["can_verify"] != true {
		t.Errorf("admin capabilities = %v", c)
	}
	viewer := bh.AddUser(t, bh.c, "watcher", "viewer")
	_, body = viewer.Get(t, "/api/runs/"+ok+"/workspace")
	if c := body["capabilities"].(map[string]any); c["can_restore"] != false || c["can_verify"] != false {
		t.Errorf("viewer capabilities = %v", c)
	}
}

func TestEventConsoleOriginalWindow(t *testing.T) {
	t.Parallel()
	bh := startJobsHub(t)
	_, _, failed := seedScopedRuns(t, bh)
	ctx := context.Background()
	now := bh.Clock.Now().Unix()
	fields := `{"error_envelope":{"kind":"transport"}}`
	err := bh.DB.Write(ctx, func(q storage.Q) error {
		return q.AppendRunEvents(ctx, []storage.RunEvent{
			{RunID: failed, TS: now, Level: "info", Kind: "queued", Message: "queued"},
			{RunID: failed, TS: now, Level: "error", Kind: "upload_failed", Message: "first upload failure", FieldsJSON: &fields},
			{RunID: failed, TS: now, Level: "warn", Kind: "retry_scheduled", Message: "retry scheduled"},
			{RunID: failed, TS: now, Level: "error", Kind: "verify_failed", Message: "second error"},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func(query string) map[string]any {
		t.Helper()
		st, body := bh.c.Get(t, "/api/runs/"+failed+"/event-console"+query)
		if st != http.StatusOK {
			t.Fatalf("%s: %d %v", query, st, body)
		}
		return body
	}
	seqs := func(body map[string]any) string {
		var out []any
		for _, e := range body["items"].([]any) {
			out = append(out, e.(map[string]any)["seq"])
		}
		return fmt.Sprint(out)
	}
	// The original's two requests (run_event_console_supports_filters_and_windows).
	body := get("?levels=error&anchor=first_error&limit=1")
	win := body["window"].(map[string]any)
	if seqs(body) != "[2]" || win["has_newer"] != true || win["has_older"] != false || win["first_seq"] != 2.0 ||
		body["locators"].(map[string]any)["first_error_seq"] != 2.0 || fmt.Sprint(body["filters"].(map[string]any)["levels"]) != "[error]" {
		t.Fatalf("anchor=first_error: %v", body)
	}
	body = get("?levels=error&after_seq=2&limit=1")
	if win := body["window"].(map[string]any); seqs(body) != "[4]" || win["has_older"] != true || win["has_newer"] != false {
		t.Fatalf("after_seq=2: %v", body)
	}
	// anchor=seq:1 starts at the first event, which has nothing older.
	body = get("?anchor=seq:1&limit=2")
	if win := body["window"].(map[string]any); seqs(body) != "[1 2]" || win["has_older"] != false || win["has_newer"] != true {
		t.Fatalf("anchor=seq:1: %v", body)
	}
	// q matches the message or the fields, case-insensitively; the tail is the default.
	if body = get("?q=TRANSPORT"); seqs(body) != "[2]" || body["filters"].(map[string]any)["q"] != "TRANSPORT" {
		t.Fatalf("q=TRANSPORT: %v", body)
	}
	if body = get("?limit=2"); seqs(body) != "[3 4]" || body["window"].(map[string]any)["has_older"] != true {
		t.Fatalf("tail: %v", body)
	}
	for _, anchor := range []string{"middle", "seq:", "seq:0", "seq:-1", "seq:abc", "seq:99999999999999999999", "seq:1x"} {
		if resp := bh.c.Do(t, "GET", "/api/runs/"+failed+"/event-console?anchor="+url.QueryEscape(anchor), nil); resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_anchor" {
			t.Fatalf("anchor=%s: %s", anchor, resp)
		}
	}
	// A seq past the end of the log is a valid anchor with nothing after it.
	if body = get("?anchor=seq:1000000"); seqs(body) != "[]" {
		t.Fatalf("anchor past the end: %v", body)
	}
	if resp := bh.c.Do(t, "GET", "/api/runs/nope/event-console?anchor=first_error", nil); resp.Status != http.StatusNotFound {
		t.Fatalf("unknown run: %s", resp)
	}
	// A run without failures has no locators, and first_error anchors on the tail.
	body = get("")
	ok := uuidN(42, 1)
	st, body := bh.c.Get(t, "/api/runs/"+ok+"/event-console?anchor=first_error")
	if st != http.StatusOK || len(body["locators"].(map[string]any)) != 0 || len(body["items"].([]any)) != 0 {
		t.Fatalf("no failure: %d %v", st, body)
	}
}

func TestJobsWorkspaceOriginalFields(t *testing.T) {
	t.Parallel()
	bh := startJobsHub(t)
	hubJob, agentJob, _ := seedScopedRuns(t, bh)
	ctx := context.Background()
	archived := uuidN(41, 3)
	addJob(t, bh.Hub, archived, davSpec)
	if _, err := bh.DB.Writer().Exec(ctx, `UPDATE jobs SET archived_at = 1, schedule = '0 * * * *' WHERE id = ?`, archived); err != nil {
		t.Fatal(err)
	}

	st, body := bh.c.Get(t, "/api/jobs/workspace")
	if st != http.StatusOK {
		t.Fatalf("status %d: %v", st, body)
	}
	if s := body["scope"].(map[string]any); s["requested"] != "all" || s["effective"] != "all" {
		t.Errorf("scope = %v", s)
	}
	if f := fmt.Sprint(body["filters"]); f != "map[include_archived:false latest_status:all q: schedule_mode:all sort:updated_desc]" {
		t.Errorf("filters = %s", f)
	}
	_, body = bh.c.Get(t, "/api/jobs/workspace?include_archived=true&sort=name_asc&page=1&page_size=20")
	if f := body["filters"].(map[string]any); f["include_archived"] != true || f["sort"] != "name_asc" || body["total"] != 3.0 {
		t.Fatalf("filters %v total %v", f, body["total"])
	}
	byID := map[string]map[string]any{}
	for _, it := range items(t, body) {
		byID[it["id"].(string)] = it
	}
	// The agent job's latest run (a restore-kind run) succeeded; its latest failure ended 120 s ago.
	now := bh.Clock.Now().Unix()
	a := byID[agentJob]
	if a["scope"] != "agent:agent-1" || a["health"] != "healthy" || a["latest_failure_at"] != float64(now-120) ||
		fmt.Sprint(a["warnings"]) != "[manual_only no_schedule]" {
		t.Errorf("agent job = %v", a)
	}
	h := byID[hubJob]
	if h["scope"] != "hub" || h["latest_success_at"] != float64(now-3500) || h["latest_failure_at"] != nil {
		t.Errorf("hub job = %v", h)
	}
	ar := byID[archived]
	caps := ar["capabilities"].(map[string]any)
	if ar["health"] != "archived" || fmt.Sprint(ar["warnings"]) != "[archived]" || caps["can_run_now"] != false ||
		caps["can_unarchive"] != true || caps["can_archive"] != false || caps["can_deploy"] != false {
		t.Errorf("archived job = %v", ar)
	}
	if c := h["capabilities"].(map[string]any); c["can_run_now"] != true || c["can_archive"] != true || c["can_delete"] != true {
		t.Errorf("hub job capabilities = %v", c)
	}

	// A job whose only run failed is critical and has never backed up.
	failedJob := uuidN(41, 4)
	addJob(t, bh.Hub, failedJob, fsSpec)
	if err := bh.DB.Writer().InsertRun(ctx, storage.Run{ID: uuidN(42, 9), JobID: failedJob, Status: storage.RunFailed, StartedAt: now - 50, EndedAt: ptr(now - 40)}); err != nil {
		t.Fatal(err)
	}
	_, body = bh.c.Get(t, "/api/jobs/workspace?latest_status=failed")
	its := items(t, body)
	if len(its) != 1 || its[0]["health"] != "critical" || fmt.Sprint(its[0]["warnings"]) != "[latest_run_failed no_successful_backup manual_only no_schedule]" {
		t.Fatalf("failed job = %v", its)
	}

	// A viewer may do nothing with a job.
	viewer := bh.AddUser(t, bh.c, "watcher", "viewer")
	_, body = viewer.Get(t, "/api/jobs/workspace")
	for _, it := range items(t, body) {
		for k, v := range it["capabilities"].(map[string]any) {
			if v != false {
				t.Errorf("viewer %s on %s = %v", k, it["id"], v)
			}
		}
	}
}

func TestJobWorkspaceOriginalFields(t *testing.T) {
	t.Parallel()
	bh := startJobsHub(t)
	ctx := context.Background()
	now := bh.Clock.Now().Unix()
	job := uuidN(43, 1)
	addJob(t, bh.Hub, job, davSpec)
	boom := "boom"
	err := bh.DB.Write(ctx, func(q storage.Q) error {
		if _, err := q.Exec(ctx, `UPDATE jobs SET schedule = '0 0 * * *' WHERE id = ?`, job); err != nil {
			return err
		}
		if err := q.InsertRun(ctx, storage.Run{ID: uuidN(44, 1), JobID: job, Status: storage.RunSuccess, StartedAt: now - 200, EndedAt: ptr(now - 190)}); err != nil {
			return err
		}
		return q.InsertRun(ctx, storage.Run{ID: uuidN(44, 2), JobID: job, Status: storage.RunFailed, StartedAt: now - 100, EndedAt: ptr(now - 90), Error: &boom})
	})
	if err != nil {
		t.Fatal(err)
	}
	st, body := bh.c.Get(t, "/api/jobs/"+job+"/workspace")
	if st != http.StatusOK {
		t.Fatalf("status %d: %v", st, body)
	}
	sum := body["summary"].(map[string]any)
	if sum["latest_success_at"] != float64(now-190) || sum["latest_failure_at"] != float64(now-90) || sum["latest_run_status"] != "failed" ||
		sum["latest_run_started_at"] != float64(now-100) || sum["latest_run_ended_at"] != float64(now-90) || sum["target_type"] != "webdav" ||
		sum["target_label"] != "https://dav.example.com/backups" || sum["schedule_label"] != "0 0 * * *" {
		t.Errorf("summary = %v", sum)
	}
	if rd := body["readiness"].(map[string]any); rd["state"] != "critical" || rd["last_success_at"] != float64(now-190) {
		t.Errorf("readiness = %v", rd)
	}
	if c := body["capabilities"].(map[string]any); c["can_run_now"] != true || c["can_edit"] != true || c["can_delete"] != true {
		t.Errorf("capabilities = %v", c)
	}
	if w := fmt.Sprint(body["warnings"]); w != "[latest_run_failed]" {
		t.Errorf("warnings = %s", w)
	}
	rr := body["recent_runs"].([]any)
	if len(rr) != 2 || rr[0].(map[string]any)["id"] != uuidN(44, 2) || rr[1].(map[string]any)["id"] != uuidN(44, 1) {
		t.Errorf("recent_runs = %v", rr)
	}

	// A local directory target is labelled with its directory; a manual job has no schedule label.
	local := uuidN(43, 2)
	addJob(t, bh.Hub, local, fsSpec)
	_, body = bh.c.Get(t, "/api/jobs/"+local+"/workspace")
	if sum := body["summary"].(map[string]any); sum["target_type"] != "local_dir" || sum["target_label"] != "/bk" || sum["schedule_label"] != nil {
		t.Errorf("local summary = %v", sum)
	}
	if rd := body["readiness"].(map[string]any); rd["state"] != "healthy" || rd["last_success_at"] != nil {
		t.Errorf("never-run readiness = %v", rd)
	}
}

package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// Issue 13: routes both we and the original serve answer as the original does.

func TestReadOnlyPOSTsNeedNoCSRF(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job := uuidN(1, 1)
	bh.insertJob(t, job, fsSpec)
	noCSRF := bh.Login(t)
	noCSRF.CSRF = ""
	if resp := noCSRF.Do(t, "POST", "/api/jobs/"+job+"/retention/preview", nil); resp.Status != http.StatusOK {
		t.Fatalf("retention preview without CSRF token: %s", resp)
	}
	// Mutations next to it still need the token.
	for _, path := range []string{"/api/jobs/" + job + "/retention/apply", "/api/nodes/hub/webdav/list"} {
		if resp := noCSRF.Do(t, "POST", path, map[string]any{}); resp.Status != http.StatusUnauthorized || resp.ErrorCode() != "invalid_csrf" {
			t.Errorf("POST %s without CSRF token: %s", path, resp)
		}
	}
	if resp := noCSRF.Do(t, "PUT", "/api/jobs/"+job+"/retention", map[string]any{"enabled": false}); resp.ErrorCode() != "invalid_csrf" {
		t.Errorf("PUT retention without CSRF token: %s", resp)
	}
	// Without a session, still 401 unauthorized.
	if resp := bh.Client(t).Do(t, "POST", "/api/jobs/"+job+"/retention/preview", nil); resp.Status != http.StatusUnauthorized || resp.ErrorCode() != "unauthorized" {
		t.Fatalf("anonymous preview: %s", resp)
	}
}

func TestTemplateValidateNeedsNoCSRF(t *testing.T) {
	t.Parallel()
	b := setupNotify(t)
	noCSRF := b.hub.Login(t)
	noCSRF.CSRF = ""
	if resp := noCSRF.Do(t, "POST", "/api/notifications/templates/validate", `{"templates":{}}`); resp.Status != http.StatusOK {
		t.Fatalf("template validation without CSRF token: %s", resp)
	}
	if resp := noCSRF.Do(t, "POST", "/api/notifications/destinations/smtp/x/test", nil); resp.ErrorCode() != "invalid_csrf" {
		t.Fatalf("destination test without CSRF token: %s", resp)
	}
}

func TestFsListOriginalSpellings(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	c := hub.Login(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("hi"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	list := func(query string) (int, []string) {
		t.Helper()
		var res struct{ Entries []struct{ Name string } }
		resp := c.Do(t, "GET", "/api/nodes/hub/fs/list?path="+url.QueryEscape(dir)+"&"+query, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("fs/list %s: %s", query, resp)
		}
		resp.Decode(t, &res)
		var out []string
		for _, e := range res.Entries {
			out = append(out, e.Name)
		}
		return resp.Status, out
	}
	for query, want := range map[string]string{
		"type_sort=dir_first":   "[sub f link]",
		"type_sort=file_first":  "[f link sub]",
		"type_sort=dirs_first":  "[sub f link]",
		"type_sort=files_first": "[f link sub]",
		"kind=symlink":          "[link]",
	} {
		if _, got := list(query); fmt.Sprint(got) != want {
			t.Errorf("%s: %v, want %s", query, got, want)
		}
	}
	if resp := c.Do(t, "GET", "/api/nodes/hub/fs/list?path="+url.QueryEscape(dir)+"&type_sort=sideways", nil); resp.Status != http.StatusBadRequest {
		t.Fatalf("bad type_sort: %s", resp)
	}
}

func TestRunEntriesOriginalFilterNames(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job, run := uuidN(1, 1), uuidN(2, 1)
	bh.insertJob(t, job, fsSpec)
	src := filepath.Join(t.TempDir(), "src")
	for name, size := range map[string]int{"a": 10, "b": 1000} {
		if err := os.MkdirAll(src, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	bh.realSnapshot(t, job, run, src, filepath.Join(t.TempDir(), "bk"))
	base := "/api/runs/" + run + "/entries?prefix=" + url.QueryEscape(strings.TrimPrefix(src, "/"))
	for query, want := range map[string]string{
		"":                                "[d a b]",
		"&type_sort=file_first":           "[a b d]",
		"&type_sort=dir_first":            "[d a b]",
		"&files_first=true":               "[a b d]", // ours, an alias
		"&kind=file&min_size_bytes=100":   "[b]",
		"&kind=file&max_size_bytes=100":   "[a]",
		"&kind=file&min_size=100":         "[b]", // ours, an alias
		"&kind=file&max_size=100":         "[a]",
		"&type_sort=file_first&kind=file": "[a b]",
	} {
		resp := bh.c.Do(t, "GET", base+query, nil)
		var page struct{ Entries []struct{ Name string } }
		resp.Decode(t, &page)
		var got []string
		for _, e := range page.Entries {
			got = append(got, e.Name)
		}
		if resp.Status != http.StatusOK || fmt.Sprint(got) != want {
			t.Errorf("%q: %d %v, want %s", query, resp.Status, got, want)
		}
	}
	for query, field := range map[string]string{"&min_sz=1": "min_sz", "&sort=name": "sort", "&type_sort=file_first&files=1": "files"} {
		resp := bh.c.Do(t, "GET", base+query, nil)
		var e struct {
			Error   string
			Details struct{ Reason, Field string }
		}
		resp.Decode(t, &e)
		if resp.Status != http.StatusBadRequest || e.Error != "invalid_query" || e.Details.Reason != "unknown_parameter" || e.Details.Field != field {
			t.Errorf("%q: %s, want 400 invalid_query unknown_parameter on %s", query, resp, field)
		}
	}
	if resp := bh.c.Do(t, "GET", base+"&type_sort=sideways", nil); resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_type_sort" {
		t.Errorf("bad type_sort: %s", resp)
	}
}

// finishedRunWithEvents stores a successful run of a new job with n events, as after a reboot.
func finishedRunWithEvents(t *testing.T, jh *jobsHub, n int) string {
	t.Helper()
	job := jh.create(t, map[string]any{"schedule": nil})
	rid := uuidN(7, 1)
	ctx := context.Background()
	end := jh.Clock.Now().Unix()
	err := jh.DB.Write(ctx, func(q storage.Q) error {
		if err := q.InsertRun(ctx, storage.Run{ID: rid, JobID: job["id"].(string), Status: storage.RunSuccess, StartedAt: end - 5, EndedAt: &end}); err != nil {
			return err
		}
		evs := make([]storage.RunEvent, n)
		for i := range evs {
			evs[i] = storage.RunEvent{RunID: rid, TS: end, Level: "info", Kind: "log", Message: fmt.Sprint(i + 1)}
		}
		return q.AppendRunEvents(ctx, evs)
	})
	if err != nil {
		t.Fatal(err)
	}
	return rid
}

func readSeqs(t *testing.T, conn *websocket.Conn, n int) []float64 {
	t.Helper()
	var seqs []float64
	for range n {
		_, b, err := conn.Read(t.Context())
		if err != nil {
			t.Fatalf("read event: %v (after %v)", err, seqs)
		}
		var ev map[string]any
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ev["seq"].(float64))
	}
	return seqs
}

// TestRunEventsSocketAfterSeq: a reconnecting client of the original sends after_seq and gets
// only what it has not seen.
func TestRunEventsSocketAfterSeq(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t, apitest.WithConfig(func(cfg *httpapi.Config) { cfg.RunEventsGrace = -1 }))
	rid := finishedRunWithEvents(t, jh, 5)
	for query, want := range map[string]string{"after_seq=3": "[4 5]", "after=2": "[3 4 5]", "after=4&after_seq=1": "[5]"} {
		conn, st := wsDialQuery(t, jh, jh.c, rid, query, jh.URL)
		if conn == nil {
			t.Fatalf("%s: dial = %d", query, st)
		}
		got := fmt.Sprint(readSeqs(t, conn, strings.Count(want, " ")+1))
		if _, _, err := conn.Read(t.Context()); got != want || websocket.CloseStatus(err) != websocket.StatusNormalClosure {
			t.Errorf("%s: events %s then %v, want %s then a normal close", query, got, err, want)
		}
		conn.CloseNow()
	}
	if _, st := wsDialQuery(t, jh, jh.c, rid, "after_seq=-1", jh.URL); st != http.StatusBadRequest {
		t.Errorf("after_seq=-1: %d, want 400", st)
	}
}

// TestRunEventsSocketGraceAfterTheEnd: the socket of a finished run stays open for the grace
// period (timed with the Hub's clock), then closes normally saying why; a client that closes first
// ends it at once.
func TestRunEventsSocketGraceAfterTheEnd(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	rid := finishedRunWithEvents(t, jh, 2)
	arms := jh.Clock.ArmCount()
	conn, st := wsDial(t, jh, jh.c, rid, 0, jh.URL)
	if conn == nil {
		t.Fatalf("dial = %d", st)
	}
	defer conn.CloseNow()
	if got := fmt.Sprint(readSeqs(t, conn, 2)); got != "[1 2]" {
		t.Fatalf("events %s", got)
	}
	type result struct{ err error }
	closed := make(chan result, 1)
	go func() {
		_, _, err := conn.Read(context.Background())
		closed <- result{err}
	}()
	armed := make(chan error, 1)
	// Two timers: the grace period's, and the session expiry the socket watches.
	go func() { armed <- jh.Clock.WaitArmCount(t.Context(), arms+2) }()
	select {
	case r := <-closed:
		t.Fatalf("closed at once after the run's end: %v", r.err)
	case err := <-armed:
		if err != nil {
			t.Fatal(err)
		}
	}
	if d, ok := jh.Clock.NextDeadline(); !ok || d.Sub(jh.Clock.Now()) != httpapi.DefaultRunEventsGrace {
		t.Fatalf("grace timer due at %v (ok %v), want now + %s", d, ok, httpapi.DefaultRunEventsGrace)
	}
	jh.Clock.Advance(httpapi.DefaultRunEventsGrace)
	r := <-closed
	var ce websocket.CloseError
	if !errors.As(r.err, &ce) || ce.Code != websocket.StatusNormalClosure || !strings.Contains(ce.Reason, "grace period") {
		t.Fatalf("after the grace period: %v, want a normal close naming the grace period", r.err)
	}
}

// TestJobsWorkspace: GET /api/jobs/workspace is its own route, not job "workspace": the jobs of
// GET /api/jobs (same filters and paging), each with its page's warnings, and their counts.
func TestJobsWorkspace(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	ctx := context.Background()
	failedRun := finishedRunWithEvents(t, jh, 1)
	run, err := jh.DB.Reader().GetRun(ctx, failedRun)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jh.DB.Writer().Exec(ctx, `UPDATE runs SET status = 'failed' WHERE id = ?`, failedRun); err != nil {
		t.Fatal(err)
	}
	manual := jh.create(t, map[string]any{"name": "manual", "schedule": nil})
	scheduled := jh.create(t, map[string]any{"name": "nightly", "schedule": "0 3 * * *"})

	st, body := jh.c.Get(t, "/api/jobs/workspace?sort=name_asc")
	if st != http.StatusOK {
		t.Fatalf("GET /api/jobs/workspace: %d %v", st, body)
	}
	warnings := map[string]string{}
	for _, it := range items(t, body) {
		warnings[it["id"].(string)] = fmt.Sprint(it["warnings"])
		if it["id"] == run.JobID && it["latest_run_status"] != "failed" {
			t.Errorf("the workspace item lacks the job's fields: %v", it)
		}
	}
	if warnings[run.JobID] == "" || !strings.Contains(warnings[run.JobID], "latest_run_failed") {
		t.Errorf("failed job's warnings: %q", warnings[run.JobID])
	}
	if warnings[manual["id"].(string)] != "[manual_only no_schedule]" || warnings[scheduled["id"].(string)] != "[]" {
		t.Errorf("warnings: %v", warnings)
	}
	if body["total"].(float64) != 3 || body["warnings"].(map[string]any)["no_schedule"] == nil {
		t.Errorf("totals: %v %v", body["total"], body["warnings"])
	}
	// The list's filters and paging apply, and so do its errors.
	if st, body := jh.c.Get(t, "/api/jobs/workspace?page=1&page_size=1&sort=name_asc"); st != http.StatusOK || len(items(t, body)) != 1 || body["total"].(float64) != 3 {
		t.Fatalf("paged: %d %v", st, body)
	}
	if resp := jh.c.Do(t, "GET", "/api/jobs/workspace?sort=sideways", nil); resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_sort" {
		t.Fatalf("bad sort: %s", resp)
	}
	if resp := jh.Client(t).Do(t, "GET", "/api/jobs/workspace", nil); resp.ErrorCode() != "unauthorized" {
		t.Fatalf("without a session: %s", resp)
	}
}

// TestUpdateJobAnswersLatestRun: PUT answers the job as GET does, latest run included.
func TestUpdateJobAnswersLatestRun(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	rid := finishedRunWithEvents(t, jh, 1)
	run, err := jh.DB.Reader().GetRun(context.Background(), rid)
	if err != nil {
		t.Fatal(err)
	}
	st, got := jh.c.Put(t, "/api/jobs/"+run.JobID, jobBody(map[string]any{"name": "renamed", "schedule": nil}))
	if st != http.StatusOK || got["name"] != "renamed" || got["latest_run_id"] != rid || got["latest_run_status"] != "success" ||
		got["latest_run_started_at"] == nil || got["latest_run_ended_at"] == nil {
		t.Fatalf("PUT: %d %v", st, got)
	}
	_, read := jh.c.Get(t, "/api/jobs/"+run.JobID)
	for _, k := range []string{"latest_run_id", "latest_run_status", "latest_run_started_at", "latest_run_ended_at"} {
		if fmt.Sprint(read[k]) != fmt.Sprint(got[k]) {
			t.Errorf("%s: PUT %v, GET %v", k, got[k], read[k])
		}
	}
}

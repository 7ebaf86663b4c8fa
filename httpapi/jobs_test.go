package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/scheduler"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// jobsHub is an API under test with the run queue and the scheduler (neither loop runs unless a
// test starts it: runs stay queued, which is what most tests look at).
type jobsHub struct {
	*apitest.Hub
	runs  *runs.Service
	sched *scheduler.Scheduler
	c     *apitest.Client
}

func startJobsHub(t *testing.T, opts ...apitest.Option) *jobsHub {
	t.Helper()
	jh := &jobsHub{}
	opts = append(opts, apitest.WithConfig(func(cfg *httpapi.Config) {
		jh.runs = runs.New(runs.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger})
		jh.sched = scheduler.New(scheduler.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger, Runs: jh.runs})
		cfg.Runs, cfg.Scheduler = jh.runs, jh.sched
	}))
	jh.Hub = apitest.Start(t, opts...)
	jh.c = jh.Login(t)
	return jh
}

func jobBody(patch map[string]any) map[string]any {
	b := map[string]any{
		"name": "nightly", "schedule": "0 3 * * *", "schedule_timezone": "Europe/Paris", "overlap_policy": "queue",
		"spec": json.RawMessage(fsSpec),
	}
	for k, v := range patch {
		if v == nil {
			delete(b, k)
			continue
		}
		b[k] = v
	}
	return b
}

func (jh *jobsHub) create(t *testing.T, patch map[string]any) map[string]any {
	t.Helper()
	st, body := jh.c.Post(t, "/api/jobs", jobBody(patch))
	if st != http.StatusOK {
		t.Fatalf("create job: %d %v", st, body)
	}
	return body
}

func TestJobCreateReadUpdateDelete(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	job := jh.create(t, nil)
	id, _ := job["id"].(string)
	if id == "" || job["name"] != "nightly" || job["missed_run_policy"] != "run_once" || job["schedule_timezone"] != "Europe/Paris" {
		t.Fatalf("created = %v", job)
	}
	// The spec is stored verbatim.
	var stored string
	if err := jh.DB.Reader().QueryRow(context.Background(), `SELECT spec_json FROM jobs WHERE id = ?`, id).Scan(&stored); err != nil || stored != fsSpec {
		t.Fatalf("stored spec = %q %v", stored, err)
	}
	// Next run: 03:00 Paris (CET, +01:00) after the clock's 2026-01-01 00:00 UTC.
	if want := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC).Unix(); job["next_run_at"] != float64(want) {
		t.Fatalf("next_run_at = %v, want %d", job["next_run_at"], want)
	}
	st, got := jh.c.Get(t, "/api/jobs/"+id)
	if st != http.StatusOK || got["id"] != id || got["spec"] == nil || got["latest_run_id"] != nil {
		t.Fatalf("get = %d %v", st, got)
	}

	st, upd := jh.c.Put(t, "/api/jobs/"+id, jobBody(map[string]any{"name": "  renamed ", "schedule": " ", "schedule_timezone": "",
		"overlap_policy": "reject", "missed_run_policy": "skip"}))
	if st != http.StatusOK || upd["name"] != "renamed" || upd["schedule"] != nil || upd["schedule_timezone"] != "UTC" ||
		upd["overlap_policy"] != "reject" || upd["missed_run_policy"] != "skip" || upd["next_run_at"] != nil {
		t.Fatalf("update = %d %v", st, upd)
	}
	if st, _ := jh.c.Put(t, "/api/jobs/nope", jobBody(nil)); st != http.StatusNotFound {
		t.Fatalf("update missing = %d", st)
	}

	if st, _ := jh.c.Delete(t, "/api/jobs/"+id); st != http.StatusNoContent {
		t.Fatalf("delete = %d", st)
	}
	for _, p := range []string{"/api/jobs/" + id, "/api/jobs/" + id + "/runs"} {
		if st, body := jh.c.Get(t, p); st != http.StatusNotFound || errCode(body) != "job_not_found" {
			t.Fatalf("GET %s after delete = %d %v", p, st, body)
		}
	}
	if st, body := jh.c.Delete(t, "/api/jobs/"+id); st != http.StatusNotFound || errCode(body) != "job_not_found" {
		t.Fatalf("delete again = %d %v", st, body)
	}
}

func TestJobValidationOrderAndCodes(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	ctx := context.Background()
	w := jh.DB.Writer()
	if _, err := w.Exec(ctx, `INSERT INTO agents(id, key_hash, created_at, updated_at) VALUES ('live', x'01', 1, 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec(ctx, `INSERT INTO agents(id, key_hash, revoked_at, created_at, updated_at) VALUES ('gone', x'02', 5, 1, 1)`); err != nil {
		t.Fatal(err)
	}
	webdav := json.RawMessage(`{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"webdav","base_url":"https://dav.example/b","secret_name":"nas"}}`)
	for _, tc := range []struct {
		name          string
		patch         map[string]any
		code, field   string
		reason        string
		messageHasAny string
	}{
		{"BlankName", map[string]any{"name": "  "}, "invalid_name", "name", "required", ""},
		{"NameFiveThousandBytes", map[string]any{"name": strings.Repeat("x", 5000)}, "invalid_name", "name", "too_long", "200"},
		{"Name201Characters", map[string]any{"name": strings.Repeat("备", 201)}, "invalid_name", "name", "too_long", ""},
		{"NameNUL", map[string]any{"name": "night\x00ly"}, "invalid_name", "name", "invalid_characters", ""},
		{"NameCRLF", map[string]any{"name": "nightly\r\nFAKE ROW"}, "invalid_name", "name", "invalid_characters", ""},
		{"NameRightToLeftOverride", map[string]any{"name": "nightly\u202Egpj.exe"}, "invalid_name", "name", "invalid_characters", ""},
		{"NameBeforeTimezone", map[string]any{"name": "", "schedule_timezone": "Mars/Base"}, "invalid_name", "name", "", ""},
		{"Timezone", map[string]any{"schedule_timezone": "Mars/Base"}, "invalid_timezone", "schedule_timezone", "", ""},
		{"LocalIsNotAZone", map[string]any{"schedule_timezone": "Local"}, "invalid_timezone", "schedule_timezone", "", ""},
		{"TimezoneBeforeAgent", map[string]any{"schedule_timezone": "Nope/Nope", "agent_id": "missing"}, "invalid_timezone", "", "", ""},
		{"AgentMissing", map[string]any{"agent_id": "missing"}, "invalid_agent_id", "agent_id", "not_found", ""},
		{"AgentRevoked", map[string]any{"agent_id": "gone"}, "invalid_agent_id", "agent_id", "revoked", ""},
		{"AgentBeforeSpec", map[string]any{"agent_id": "gone", "spec": json.RawMessage(`{}`)}, "invalid_agent_id", "", "", ""},
		{"SpecMissing", map[string]any{"spec": nil}, "invalid_spec", "spec", "required", ""},
		{"SpecRule", map[string]any{"spec": json.RawMessage(`{"v":1,"type":"filesystem","source":{"paths":[]},"target":{"type":"local_dir","base_dir":"/bk"}}`)},
			"invalid_spec", "spec.source.paths", "", "paths"},
		{"SpecBeforeSecret", map[string]any{"spec": json.RawMessage(`{"v":1,"type":"nope"}`), "schedule": "bad"}, "invalid_spec", "", "", ""},
		// Job specs keep a destination list per channel; a list named after no channel is refused.
		{"NotifyUnknownChannel", map[string]any{"spec": json.RawMessage(`{"v":1,"type":"filesystem","source":{"paths":["/a"]},"target":{"type":"local_dir","base_dir":"/bk"},"notifications":{"mode":"custom","no_such_channel":["p"]}}`)},
			"invalid_spec", "spec.notifications.no_such_channel", "unsupported", "wecom_bot, email, webhook"},
		{"WebDAVSecretMissing", map[string]any{"spec": webdav}, "invalid_webdav_secret", "spec.target.secret_name", "", ""},
		{"WebDAVSecretOfAnotherNode", map[string]any{"spec": webdav, "agent_id": "live"}, "invalid_webdav_secret", "spec.target.secret_name", "", ""},
		{"Schedule", map[string]any{"schedule": "10 * * * * *"}, "invalid_schedule", "schedule", "invalid_format", ""},
		{"ScheduleSubMinute", map[string]any{"schedule": "*/10 * * * * *"}, "invalid_schedule", "schedule", "", ""},
		{"ScheduleNeverFires", map[string]any{"schedule": "0 0 31 4 *"}, "invalid_schedule", "schedule", "never_fires", ""},
		{"MissedRunPolicy", map[string]any{"missed_run_policy": "sometimes"}, "invalid_missed_run_policy", "missed_run_policy", "", ""},
		{"OverlapRequired", map[string]any{"overlap_policy": nil}, "invalid_overlap_policy", "overlap_policy", "required", ""},
		{"OverlapValue", map[string]any{"overlap_policy": "skip"}, "invalid_overlap_policy", "overlap_policy", "invalid_value", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := jh.c.Post(t, "/api/jobs", jobBody(tc.patch))
			d := details(body)
			if st != http.StatusBadRequest || errCode(body) != tc.code {
				t.Fatalf("= %d %v, want 400 %s", st, body, tc.code)
			}
			if tc.field != "" && d["field"] != tc.field {
				t.Errorf("field = %v, want %s", d["field"], tc.field)
			}
			if tc.reason != "" && d["reason"] != tc.reason {
				t.Errorf("reason = %v, want %s", d["reason"], tc.reason)
			}
			if msg, _ := body["message"].(string); tc.messageHasAny != "" && !strings.Contains(msg, tc.messageHasAny) {
				t.Errorf("message %q does not name the rule", msg)
			}
		})
	}
	// Valid forms the original accepts: six fields with seconds 0; a WebDAV secret that exists.
	// A name of exactly 200 characters, of any script, is stored trimmed.
	long := strings.Repeat("备", 200)
	created := jh.create(t, map[string]any{"schedule": "0 */5 * * * *", "name": "  " + long + " "})
	if created["name"] != long {
		t.Fatalf("stored name = %q, want the 200 characters, trimmed", created["name"])
	}
	// An update is held to the same rule and changes nothing when refused.
	if st, body := jh.c.Put(t, "/api/jobs/"+created["id"].(string), jobBody(map[string]any{"name": "a\u2066b"})); st != http.StatusBadRequest || errCode(body) != "invalid_name" {
		t.Fatalf("update with an isolate in the name: %d %v", st, body)
	}
	if _, got := jh.c.Get(t, "/api/jobs/"+created["id"].(string)); got["name"] != long {
		t.Fatalf("refused update changed the name to %q", got["name"])
	}
	if _, err := w.Exec(ctx, `INSERT INTO secrets(id, node_id, kind, name, kid, nonce, ciphertext, created_at, updated_at)
		VALUES ('s1', 'hub', 'webdav', 'nas', 1, x'00', x'00', 1, 1)`); err != nil {
		t.Fatal(err)
	}
	jh.create(t, map[string]any{"spec": webdav})
	var n int
	_ = jh.DB.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM jobs`).Scan(&n)
	if n != 2 {
		t.Fatalf("%d jobs stored, want only the 2 valid ones", n)
	}
}

func TestNewJobInheritsTheHubDefaultRetention(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	ctx := context.Background()
	if err := jh.DB.Writer().PutSetting(ctx, storage.SettingHubRuntimeConfig,
		`{"hub_timezone":"UTC","default_backup_retention":{"enabled":true,"keep_last":7,"keep_days":0,"max_delete_per_tick":50,"max_delete_per_day":200}}`, 1); err != nil {
		t.Fatal(err)
	}
	job := jh.create(t, nil)
	spec, _ := job["spec"].(map[string]any)
	ret, _ := spec["retention"].(map[string]any)
	if ret["enabled"] != true || ret["keep_last"] != float64(7) {
		t.Fatalf("spec of a new job without retention = %v", spec)
	}
	own := `{"v":1,"type":"filesystem","source":{"paths":["/srv/data"]},"target":{"type":"local_dir","base_dir":"/bk"},"retention":{"enabled":false}}`
	job = jh.create(t, map[string]any{"spec": json.RawMessage(own)})
	var stored string
	_ = jh.DB.Reader().QueryRow(ctx, `SELECT spec_json FROM jobs WHERE id = ?`, job["id"]).Scan(&stored)
	if stored != own {
		t.Fatalf("a spec with its own retention was changed: %s", stored)
	}
	// An update never adds it.
	id := job["id"].(string)
	if st, _ := jh.c.Put(t, "/api/jobs/"+id, jobBody(nil)); st != http.StatusOK {
		t.Fatal(st)
	}
	_ = jh.DB.Reader().QueryRow(ctx, `SELECT spec_json FROM jobs WHERE id = ?`, id).Scan(&stored)
	if stored != fsSpec {
		t.Fatalf("update stored %s", stored)
	}
}

func TestJobListFiltersAndPages(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	a := jh.create(t, map[string]any{"name": "alpha"})
	jh.Clock.Advance(time.Second)
	jh.create(t, map[string]any{"name": "beta", "schedule": nil})
	jh.Clock.Advance(time.Second)
	c := jh.create(t, map[string]any{"name": "gamma"})
	if st, _ := jh.c.Post(t, "/api/jobs/"+c["id"].(string)+"/archive", nil); st != http.StatusNoContent {
		t.Fatal(st)
	}
	st, run := jh.c.Post(t, "/api/jobs/"+a["id"].(string)+"/run", nil)
	if st != http.StatusOK || run["status"] != "queued" {
		t.Fatalf("run now = %d %v", st, run)
	}
	names := func(query string) ([]string, map[string]any) {
		t.Helper()
		st, body := jh.c.Get(t, "/api/jobs"+query)
		if st != http.StatusOK {
			t.Fatalf("list %s = %d %v", query, st, body)
		}
		var out []string
		for _, it := range items(t, body) {
			out = append(out, it["name"].(string))
		}
		return out, body
	}
	if got, body := names(""); strings.Join(got, ",") != "beta,alpha" || body["total"] != float64(2) || body["page"] != float64(1) {
		t.Fatalf("default list = %v %v", got, body)
	}
	if got, _ := names("?include_archived=true&sort=name_asc"); strings.Join(got, ",") != "alpha,beta,gamma" {
		t.Fatalf("with archived = %v", got)
	}
	if got, body := names("?sort=name_asc&page=2&page_size=1"); strings.Join(got, ",") != "beta" || body["total"] != float64(2) || body["page_size"] != float64(1) {
		t.Fatalf("page 2 = %v %v", got, body)
	}
	if got, _ := names("?latest_status=queued"); strings.Join(got, ",") != "alpha" {
		t.Fatalf("latest_status=queued = %v", got)
	}
	if got, _ := names("?schedule_mode=manual"); strings.Join(got, ",") != "beta" {
		t.Fatalf("manual = %v", got)
	}
	if got, _ := names("?q=ALP&scope=hub"); strings.Join(got, ",") != "alpha" {
		t.Fatalf("q = %v", got)
	}
	if got, _ := names("?scope=agent:someone"); len(got) != 0 {
		t.Fatalf("agent scope = %v", got)
	}
	_, body := names("?q=alpha")
	it := items(t, body)[0]
	if it["latest_run_id"] != run["run_id"] || it["latest_run_status"] != "queued" || it["next_run_at"] == nil || it["spec"] != nil {
		t.Fatalf("list item = %v", it)
	}
	for q, code := range map[string]string{"?scope=nope": "invalid_scope", "?latest_status=odd": "invalid_latest_status",
		"?schedule_mode=x": "invalid_schedule_mode", "?sort=size": "invalid_sort", "?page=0": "invalid_page",
		"?page=922337203685477581&page_size=20": "invalid_page", // the offset overflowed and answered page 1
		"?page_size=0":                          "invalid_page_size", "?include_archived=maybe": "invalid_include_archived"} {
		if st, body := jh.c.Get(t, "/api/jobs"+q); st != http.StatusBadRequest || errCode(body) != code {
			t.Errorf("%s = %d %v, want %s", q, st, body, code)
		}
	}
}

func TestRunNowOverlapArchiveAndRunsList(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	job := jh.create(t, map[string]any{"overlap_policy": "reject"})
	id := job["id"].(string)
	st, first := jh.c.Post(t, "/api/jobs/"+id+"/run", nil)
	if st != http.StatusOK || first["status"] != "queued" || first["run_id"] == "" {
		t.Fatalf("run now = %d %v", st, first)
	}
	st, second := jh.c.Post(t, "/api/jobs/"+id+"/run", nil)
	if st != http.StatusOK || second["status"] != "rejected" {
		t.Fatalf("run now while queued (reject) = %d %v", st, second)
	}
	resp := jh.c.Do(t, "GET", "/api/jobs/"+id+"/runs", nil)
	list := resp.JSONArray(t)
	if resp.Status != http.StatusOK || len(list) != 2 {
		t.Fatalf("runs = %s", resp)
	}
	rej := list[0].(map[string]any)
	if rej["id"] != second["run_id"] || rej["error"] != "overlap_rejected" || rej["ended_at"] == nil {
		t.Fatalf("rejected run in list = %v", rej)
	}

	if st, _ := jh.c.Post(t, "/api/jobs/"+id+"/archive?cascade_snapshots=false", nil); st != http.StatusNoContent {
		t.Fatal(st)
	}
	if st, _ := jh.c.Post(t, "/api/jobs/"+id+"/archive", nil); st != http.StatusNoContent { // idempotent
		t.Fatal(st)
	}
	if st, body := jh.c.Post(t, "/api/jobs/"+id+"/run", nil); st != http.StatusConflict || errCode(body) != "job_archived" {
		t.Fatalf("run archived = %d %v", st, body)
	}
	if st, body := jh.c.Post(t, "/api/jobs/"+id+"/archive?cascade_snapshots=perhaps", nil); st != http.StatusBadRequest {
		t.Fatalf("bad cascade flag = %d %v", st, body)
	}
	if st, _ := jh.c.Post(t, "/api/jobs/"+id+"/unarchive?cascade_snapshots=perhaps", nil); st != http.StatusNoContent {
		t.Fatal(st) // unarchive has no cascade: the flag is not read
	}
	if st, _ := jh.c.Post(t, "/api/jobs/"+id+"/unarchive", nil); st != http.StatusNoContent { // idempotent
		t.Fatal(st)
	}
	if st, _ := jh.c.Post(t, "/api/jobs/"+id+"/run", nil); st != http.StatusOK {
		t.Fatal(st)
	}
	for _, p := range []string{"/run", "/archive", "/unarchive"} {
		if st, body := jh.c.Post(t, "/api/jobs/nope"+p, nil); st != http.StatusNotFound || errCode(body) != "job_not_found" {
			t.Errorf("POST %s of a missing job = %d %v", p, st, body)
		}
	}
}

func TestJobAndRunRoutesNeedSessionAndCSRF(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	anon := jh.Client(t)
	if st, body := anon.Get(t, "/api/jobs"); st != http.StatusUnauthorized || errCode(body) != "unauthorized" {
		t.Fatalf("anonymous list = %d %v", st, body)
	}
	noCSRF := jh.Login(t)
	noCSRF.CSRF = ""
	if st, body := noCSRF.Post(t, "/api/jobs", jobBody(nil)); st != http.StatusUnauthorized || errCode(body) != "invalid_csrf" {
		t.Fatalf("create without CSRF = %d %v", st, body)
	}
	if st, _ := noCSRF.Get(t, "/api/schedule/preview?cron=*+*+*+*+*"); st != http.StatusOK {
		t.Fatalf("GET with a session but no CSRF = %d", st)
	}
}

func TestRunDetailCancelAndEvents(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	job := jh.create(t, nil)
	_, run := jh.c.Post(t, "/api/jobs/"+job["id"].(string)+"/run", nil)
	rid := run["run_id"].(string)
	st, d := jh.c.Get(t, "/api/runs/"+rid)
	if st != http.StatusOK || d["status"] != "queued" || d["job_name"] != "nightly" || d["node_id"] != "hub" || d["progress"] != nil {
		t.Fatalf("run = %d %v", st, d)
	}
	st, c := jh.c.Post(t, "/api/runs/"+rid+"/cancel", map[string]string{"reason": "  wrong day "})
	if st != http.StatusOK || c["status"] != "canceled" || c["cancel_reason"] != "wrong day" || c["cancel_requested_by_user_id"] != float64(1) {
		t.Fatalf("cancel = %d %v", st, c)
	}
	if st, c := jh.c.Post(t, "/api/runs/"+rid+"/cancel", nil); st != http.StatusOK || c["cancel_reason"] != "wrong day" {
		t.Fatalf("second cancel = %d %v", st, c)
	}
	resp := jh.c.Do(t, "GET", "/api/runs/"+rid+"/events", nil)
	evs := resp.JSONArray(t)
	if len(evs) != 2 {
		t.Fatalf("events = %s", resp)
	}
	q := evs[0].(map[string]any)
	if q["kind"] != "queued" || q["seq"] != float64(1) || q["fields"].(map[string]any)["source"] != "manual" {
		t.Fatalf("queued event = %v", q)
	}
	for _, p := range []string{"/api/runs/nope", "/api/runs/nope/events"} {
		if st, body := jh.c.Get(t, p); st != http.StatusNotFound || errCode(body) != "run_not_found" {
			t.Errorf("%s = %d %v", p, st, body)
		}
	}
	if st, body := jh.c.Post(t, "/api/runs/nope/cancel", nil); st != http.StatusNotFound || errCode(body) != "run_not_found" {
		t.Errorf("cancel missing = %d %v", st, body)
	}
}

func TestSchedulePreview(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	var out struct {
		Times []string `json:"times"`
	}
	resp := jh.c.Do(t, "GET", "/api/schedule/preview?"+url.Values{"cron": {"30 2 * * *"}, "timezone": {"America/New_York"},
		"count": {"3"}, "after": {"2026-03-07T00:00:00Z"}}.Encode(), nil)
	resp.Decode(t, &out)
	// 2026-03-08 02:30 does not exist in New York: it fires at 03:00 EDT, once.
	want := []string{"2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}
	if resp.Status != http.StatusOK || strings.Join(out.Times, " ") != strings.Join(want, " ") {
		t.Fatalf("preview = %s", resp)
	}
	resp = jh.c.Do(t, "GET", "/api/schedule/preview?cron=0+12+*+*+*", nil) // default count 5, after now, Hub zone
	resp.Decode(t, &out)
	if len(out.Times) != 5 || out.Times[0] != "2026-01-01T12:00:00Z" {
		t.Fatalf("default preview = %s", resp)
	}
	for q, code := range map[string]string{
		"cron=0+0+31+4+*": "invalid_schedule", "cron=nope": "invalid_schedule", "cron=*+*+*+*+*&timezone=Mars/Base": "invalid_timezone",
		"cron=*+*+*+*+*&count=0": "invalid_count", "cron=*+*+*+*+*&count=51": "invalid_count", "cron=*+*+*+*+*&after=yesterday": "invalid_after",
	} {
		if st, body := jh.c.Get(t, "/api/schedule/preview?"+q); st != http.StatusBadRequest || errCode(body) != code {
			t.Errorf("%s = %d %v, want %s", q, st, body, code)
		}
	}
}

// wsDial opens the run-event socket with an Origin; it returns the HTTP status on refusal.
func wsDial(t *testing.T, jh *jobsHub, c *apitest.Client, runID string, after int, origin string) (*websocket.Conn, int) {
	t.Helper()
	return wsDialQuery(t, jh, c, runID, fmt.Sprintf("after=%d", after), origin)
}

// wsDialQuery is wsDial with the query string given whole.
func wsDialQuery(t *testing.T, jh *jobsHub, c *apitest.Client, runID, query, origin string) (*websocket.Conn, int) {
	t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	if c.HTTP.Jar != nil {
		for _, ck := range c.HTTP.Jar.Cookies(mustURL(t, jh.URL)) {
			h.Add("Cookie", ck.Name+"="+ck.Value)
		}
	}
	for k, vs := range c.Header {
		h[k] = vs
	}
	u := "ws" + strings.TrimPrefix(jh.URL, "http") + "/api/runs/" + runID + "/events/ws?" + query
	conn, resp, err := websocket.Dial(t.Context(), u, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		return nil, resp.StatusCode
	}
	return conn, http.StatusSwitchingProtocols
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRunEventsWebSocketReplaysFollowsAndChecksOrigin(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- jh.runs.Run(ctx) }() // the event writer (no executor: nothing runs)
	t.Cleanup(func() { cancel(); <-done })

	// An agent job: with no agent runner its run stays queued instead of being executed.
	if _, err := jh.DB.Writer().Exec(context.Background(), `INSERT INTO agents(id, key_hash, created_at, updated_at) VALUES ('a1', x'01', 1, 1)`); err != nil {
		t.Fatal(err)
	}
	job := jh.create(t, map[string]any{"schedule": nil, "agent_id": "a1"})
	_, run := jh.c.Post(t, "/api/jobs/"+job["id"].(string)+"/run", nil)
	rid := run["run_id"].(string)
	// Hold the run "running", as a started agent run is, and feed it events.
	if _, err := jh.DB.Writer().Exec(context.Background(), `UPDATE runs SET status = 'running' WHERE id = ?`, rid); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := jh.runs.AppendEvents(context.Background(), rid, runs.Event{Kind: "log", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	origin := jh.URL // http://127.0.0.1:port: the Hub as the browser sees it
	conn, st := wsDial(t, jh, jh.c, rid, 1, origin)
	if conn == nil {
		t.Fatalf("dial = %d", st)
	}
	defer conn.CloseNow()
	read := func() map[string]any {
		t.Helper()
		_, b, err := conn.Read(t.Context())
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for want := 2; want <= 4; want++ { // replay after 1
		if ev := read(); ev["seq"] != float64(want) {
			t.Fatalf("replayed %v, want seq %d", ev, want)
		}
	}
	if err := jh.runs.AppendEvents(context.Background(), rid, runs.Event{Kind: "upload", Message: "live"}); err != nil {
		t.Fatal(err)
	}
	if ev := read(); ev["seq"] != float64(5) || ev["message"] != "live" || ev["run_id"] != rid {
		t.Fatalf("live = %v", ev)
	}
	if err := jh.runs.Finish(context.Background(), rid, runs.Outcome{Status: storage.RunSuccess}); err != nil {
		t.Fatal(err)
	}
	if ev := read(); ev["kind"] != "complete" {
		t.Fatalf("final = %v", ev)
	}
	// The socket stays open for a grace period after the final event:
	// TestRunEventsSocketGraceAfterTheEnd.
	conn.CloseNow()

	u := mustURL(t, jh.URL)
	for _, o := range []string{"", "http://evil.example:" + u.Port(), "https://" + u.Host, "http://127.0.0.1:1", "null"} {
		if _, st := wsDial(t, jh, jh.c, rid, 0, o); st != http.StatusUnauthorized {
			t.Errorf("origin %q = %d, want 401", o, st)
		}
	}
	if conn, st := wsDial(t, jh, jh.c, rid, 0, "ws://"+u.Host); st != http.StatusSwitchingProtocols {
		t.Errorf("ws:// origin of the same host = %d", st)
	} else {
		conn.CloseNow()
	}
	if _, st := wsDial(t, jh, jh.Client(t), rid, 0, origin); st != http.StatusUnauthorized {
		t.Errorf("without a session = %d", st)
	}
	if _, st := wsDial(t, jh, jh.c, "nope", 0, origin); st != http.StatusNotFound {
		t.Errorf("missing run = %d", st)
	}
}

// TestRunEventsOriginIgnoresForwardedHost: behind a trusted proxy, X-Forwarded-Host (which a
// proxy may pass on from the client) does not make its host an accepted origin, even when that
// host is one the Hub answers to; the origin of --public-base-url is accepted.
func TestRunEventsOriginIgnoresForwardedHost(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
		cfg.InsecureHTTP = true
		cfg.PublicBaseURL = "https://backup.example.com/hub"
		// Past the Host allowlist (which refuses unknown names with 421), to the origin check.
		cfg.AllowedHosts = []string{"evil.example"}
	}))
	job := jh.create(t, map[string]any{"schedule": nil})
	_, run := jh.c.Post(t, "/api/jobs/"+job["id"].(string)+"/run", nil)
	rid := run["run_id"].(string)
	jh.c.Header.Set("X-Forwarded-Host", "evil.example")
	if conn, st := wsDial(t, jh, jh.c, rid, 0, "http://evil.example"); st != http.StatusUnauthorized {
		if conn != nil {
			conn.CloseNow()
		}
		t.Fatalf("origin named by X-Forwarded-Host = %d, want 401", st)
	}
	jh.c.Header.Set("X-Forwarded-Proto", "https")
	conn, st := wsDial(t, jh, jh.c, rid, 0, "https://backup.example.com")
	if st != http.StatusSwitchingProtocols {
		t.Fatalf("origin of --public-base-url = %d, want 101", st)
	}
	conn.CloseNow()
}

// TestScheduledJobsFireAtPreviewTimes is the end-to-end promise: jobs created through the API
// fire at exactly the instants the preview shows, in their zone, across a DST change, and the
// loop wakes for nothing but those triggers and its capped sleeps, which write nothing.
func TestScheduledJobsFireAtPreviewTimes(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 6, 12, 0, 0, 0, time.UTC)
	end := start.Add(9 * 24 * time.Hour)
	clk := clock.NewFake(start)
	jh := startJobsHub(t, apitest.WithClock(clk))
	type job struct {
		id    string
		times []time.Time
	}
	var jobs []job
	for _, spec := range []struct{ cron, zone string }{
		{"30 2 * * *", "America/New_York"}, // spring gap on 03-08
		{"0 */6 * * *", "Europe/London"},   // elapsed-time hours
		{"45 9 * * 1-5", "Asia/Tokyo"},     // weekdays, no DST
	} {
		body := jh.create(t, map[string]any{"schedule": spec.cron, "schedule_timezone": spec.zone, "name": spec.cron})
		var out struct {
			Times []string `json:"times"`
		}
		resp := jh.c.Do(t, "GET", "/api/schedule/preview?"+url.Values{"cron": {spec.cron}, "timezone": {spec.zone},
			"count": {"50"}, "after": {start.Format(time.RFC3339)}}.Encode(), nil)
		resp.Decode(t, &out)
		j := job{id: body["id"].(string)}
		for _, s := range out.Times {
			ts, err := time.Parse(time.RFC3339, s)
			if err != nil {
				t.Fatal(err)
			}
			if !ts.After(end) {
				j.times = append(j.times, ts)
			}
		}
		jobs = append(jobs, j)
	}
	var all []time.Time
	for _, j := range jobs {
		all = append(all, j.times...)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	arms := clk.ArmCount()
	go func() { done <- jh.sched.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := clk.WaitArmCount(t.Context(), arms+1); err != nil {
		t.Fatal(err)
	}
	fires0 := clk.Fires()
	triggers := map[int64]bool{}
	for _, ts := range all {
		triggers[ts.Unix()] = true
	}
	wakes, capWakes := 0, 0
	for {
		d, ok := clk.NextDeadline()
		if !ok {
			t.Fatal("the scheduler has no timer armed")
		}
		if d.After(end) {
			break
		}
		if d.Sub(clk.Now()) > scheduler.DefaultMaxSleep {
			t.Fatalf("sleep of %v exceeds the cap", d.Sub(clk.Now()))
		}
		if !triggers[d.Unix()] {
			capWakes++
			if d.Sub(clk.Now()) != scheduler.DefaultMaxSleep {
				t.Fatalf("woke at %v, neither a trigger nor a capped sleep", d)
			}
		}
		wakes++
		before := writes(t, jh)
		arms := clk.ArmCount()
		clk.Set(d)
		if err := clk.WaitArmCount(t.Context(), arms+1); err != nil {
			t.Fatal(err)
		}
		if after := writes(t, jh); triggers[d.Unix()] == (after == before) {
			t.Fatalf("wake-up at %v (trigger: %v) changed %d rows", d, triggers[d.Unix()], after-before)
		}
	}
	if got := int(clk.Fires() - fires0); got != wakes {
		t.Fatalf("timer fired %d times for %d wake-ups", got, wakes)
	}
	c := jh.Login(t) // days went by: the first session has expired
	for _, j := range jobs {
		resp := c.Do(t, "GET", "/api/jobs/"+j.id+"/runs", nil)
		list := resp.JSONArray(t)
		var got []int64
		for i := len(list) - 1; i >= 0; i-- {
			got = append(got, int64(list[i].(map[string]any)["started_at"].(float64)))
		}
		var want []int64
		for _, ts := range j.times {
			want = append(want, ts.Unix())
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("job %s fired at %v, preview said %v", j.id, got, want)
		}
	}
	t.Logf("%d triggers, %d capped wake-ups, nothing else", len(triggers), capWakes)
}

// writes is the number of rows changed through the Hub's single writer connection so far.
func writes(t *testing.T, jh *jobsHub) int64 {
	t.Helper()
	var n int64
	if err := jh.DB.Writer().QueryRow(context.Background(), `SELECT total_changes()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRevokedAgentJobs: revoking an agent through the API fails its jobs' queued runs with
// agent_revoked, and running such a job is refused with 409 agent_revoked.
func TestRevokedAgentJobs(t *testing.T) {
	t.Parallel()
	var sock *agentsock.Hub
	jh := startJobsHub(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		sock = agentsock.New(agentsock.Config{DB: cfg.DB, Clock: cfg.Clock, Logger: cfg.Logger})
		cfg.Agents = sock
	}))
	t.Cleanup(sock.Close)
	if _, err := jh.DB.Writer().Exec(context.Background(), `INSERT INTO agents(id, key_hash, created_at, updated_at) VALUES ('a1', x'01', 1, 1)`); err != nil {
		t.Fatal(err)
	}
	job := jh.create(t, map[string]any{"schedule": nil, "agent_id": "a1"})
	path := "/api/jobs/" + job["id"].(string) + "/run"
	st, run := jh.c.Post(t, path, nil)
	if st != 200 || run["status"] != "queued" {
		t.Fatalf("run now while the agent is away: %d %v", st, run)
	}
	if st, _ := jh.c.Post(t, "/api/agents/a1/revoke", nil); st != 204 {
		t.Fatalf("revoke: %d", st)
	}
	r, err := jh.DB.Reader().GetRun(context.Background(), run["run_id"].(string))
	if err != nil || r.Status != "failed" || r.Error == nil || *r.Error != "agent_revoked" {
		t.Fatalf("queued run after the revocation: %+v %v", r, err)
	}
	if resp := jh.c.Do(t, "POST", path, nil); resp.Status != 409 || resp.ErrorCode() != "agent_revoked" {
		t.Fatalf("run now of a revoked agent's job: %s", resp)
	}
}

// blockingExec holds every execution until its context ends.
type blockingExec struct{ entered chan context.Context }

func (e blockingExec) Execute(ctx context.Context, _ runs.ExecRequest) (runs.Outcome, error) {
	e.entered <- ctx
	<-ctx.Done()
	return runs.Outcome{}, ctx.Err()
}

// TestDeleteJobAbortsItsLiveRuns: deleting a job stops its running execution, and its queued
// run goes with it.
func TestDeleteJobAbortsItsLiveRuns(t *testing.T) {
	t.Parallel()
	exec := blockingExec{entered: make(chan context.Context, 2)}
	jh := &jobsHub{}
	jh.Hub = apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		jh.runs = runs.New(runs.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger, Executor: exec})
		cfg.Runs = jh.runs
	}))
	jh.c = jh.Login(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- jh.runs.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	id := jh.create(t, nil)["id"].(string)
	if st, body := jh.c.Post(t, "/api/jobs/"+id+"/run", nil); st != http.StatusOK {
		t.Fatalf("run now = %d %v", st, body)
	}
	var runCtx context.Context
	select {
	case runCtx = <-exec.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the run never started")
	}
	if st, body := jh.c.Post(t, "/api/jobs/"+id+"/run", nil); st != http.StatusOK || body["status"] != "queued" {
		t.Fatalf("second run now = %d %v", st, body)
	}
	if st, body := jh.c.Delete(t, "/api/jobs/"+id); st != http.StatusNoContent {
		t.Fatalf("delete = %d %v", st, body)
	}
	select {
	case <-runCtx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the running execution of a deleted job was not stopped")
	}
	var n int
	if err := jh.DB.Reader().QueryRow(context.Background(), `SELECT COUNT(*) FROM runs`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("runs left = %d %v", n, err)
	}
}

// wakeCounter is the real scheduler, counting the wake-ups the API asks for directly.
type wakeCounter struct {
	*scheduler.Scheduler
	wakes atomic.Int32
}

func (w *wakeCounter) Wake() {
	w.wakes.Add(1)
	w.Scheduler.Wake()
}

// TestRunNowWakesTheScheduler: running a job by hand is one of the scheduler's wake-ups.
func TestRunNowWakesTheScheduler(t *testing.T) {
	t.Parallel()
	sched := &wakeCounter{}
	jh := &jobsHub{}
	jh.Hub = apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		jh.runs = runs.New(runs.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger})
		sched.Scheduler = scheduler.New(scheduler.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger, Runs: jh.runs})
		cfg.Runs, cfg.Scheduler = jh.runs, sched
	}))
	jh.c = jh.Login(t)
	id := jh.create(t, nil)["id"].(string)
	before := sched.wakes.Load()
	if st, body := jh.c.Post(t, "/api/jobs/"+id+"/run", nil); st != http.StatusOK {
		t.Fatalf("run now = %d %v", st, body)
	}
	if got := sched.wakes.Load() - before; got != 1 {
		t.Fatalf("run now woke the scheduler %d times, want 1", got)
	}
}

// An administrator sets hooks through the job API; they are stored with the spec and come back,
// and a job saved without them has none.
func TestJobHooksThroughTheAPI(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	spec := `{"v":1,"type":"filesystem","source":{"paths":["/srv/data"]},"target":{"type":"local_dir","base_dir":"/bk"},
		"hooks":{"before":{"command":["pg_dump","-f","/srv/data/db.sql","app"],"timeout_seconds":600},
		"after":{"command":["curl","-fsS","https://hc-ping.com/uuid"],"when":"success"}}}`
	job := jh.create(t, map[string]any{"spec": json.RawMessage(spec)})
	id := job["id"].(string)
	st, got := jh.c.Get(t, "/api/jobs/"+id)
	hooks, _ := got["spec"].(map[string]any)["hooks"].(map[string]any)
	if st != http.StatusOK || hooks == nil || hooks["before"].(map[string]any)["timeout_seconds"].(float64) != 600 {
		t.Fatalf("get = %d %v", st, got["spec"])
	}
	for _, bad := range []string{
		`{"before":{"command":[]}}`, `{"after":{"command":["x"],"when":"later"}}`, `{"before":{"command":["x"],"timeout_seconds":0}}`,
	} {
		b := `{"v":1,"type":"filesystem","source":{"paths":["/srv/data"]},"target":{"type":"local_dir","base_dir":"/bk"},"hooks":` + bad + `}`
		resp := jh.c.Do(t, "PUT", "/api/jobs/"+id, jobBody(map[string]any{"spec": json.RawMessage(b)}))
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_spec" {
			t.Fatalf("PUT hooks %s: %s", bad, resp)
		}
	}
	st, upd := jh.c.Put(t, "/api/jobs/"+id, jobBody(nil))
	if _, has := upd["spec"].(map[string]any)["hooks"]; st != http.StatusOK || has {
		t.Fatalf("update without hooks = %d %v", st, upd["spec"])
	}
}

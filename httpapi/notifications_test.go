package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/notify/channel/webhook"
	"github.com/bastion-backup/bastion/engine/notify/send"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

type notifyBundle struct {
	hub *apitest.Hub
	c   *apitest.Client
	svc *notify.Service
}

// setupNotify starts the API with the real encrypted secret store, wired as the Hub does:
// destinations are stored through /api/secrets, and deleting one cancels its queued messages.
func setupNotify(t *testing.T) *notifyBundle {
	t.Helper()
	b := &notifyBundle{}
	b.hub = apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		svc, err := notify.New(notify.Options{DB: cfg.DB, Secrets: cfg.Secrets, Clock: cfg.Clock, Logger: cfg.Logger, RateEvery: -1})
		if err != nil {
			t.Fatal(err)
		}
		b.svc, cfg.Notifications, cfg.OnSecretDeleted = svc, svc, svc.SecretDeleted
	}))
	b.c = b.hub.Login(t)
	ctx := context.Background()
	if err := b.hub.DB.Write(ctx, func(q storage.Q) error {
		return q.InsertJob(ctx, storage.Job{ID: "job-1", Name: "Nightly", ScheduleTimezone: "UTC",
			OverlapPolicy: "queue", MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1})
	}); err != nil {
		t.Fatal(err)
	}
	return b
}

// putSecret stores a destination through the secrets API (segment: smtp, wecom-bot, webhook).
func (b *notifyBundle) putSecret(t *testing.T, segment, name string, payload any) {
	t.Helper()
	if resp := b.c.Do(t, http.MethodPut, "/api/secrets/"+segment+"/"+url.PathEscape(name), payload); resp.Status != http.StatusNoContent {
		t.Fatalf("put secret %s/%s: %d %s", segment, name, resp.Status, resp.Body)
	}
}

// startWorker runs the delivery worker until the test ends.
func (b *notifyBundle) startWorker(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func (b *notifyBundle) finishRun(t *testing.T, runID string, spec notify.JobNotifications) {
	t.Helper()
	ctx := context.Background()
	end := b.hub.Clock.Now().Unix()
	if err := b.hub.DB.Write(ctx, func(q storage.Q) error {
		if err := q.InsertRun(ctx, storage.Run{ID: runID, JobID: "job-1", Status: storage.RunFailed, StartedAt: end - 5, EndedAt: &end}); err != nil {
			return err
		}
		_, err := b.svc.EnqueueForRun(ctx, q, notify.RunInfo{ID: runID, Status: storage.RunFailed}, spec)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	b.svc.Wake()
}

func (b *notifyBundle) queue(t *testing.T, query string) notify.QueuePage {
	t.Helper()
	resp := b.c.Do(t, http.MethodGet, "/api/notifications/queue"+query, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("queue%s: %d %s", query, resp.Status, resp.Body)
	}
	var p notify.QueuePage
	resp.Decode(t, &p)
	return p
}

func (b *notifyBundle) item(t *testing.T, runID, channel string) notify.QueueItem {
	t.Helper()
	for _, it := range b.queue(t, "?page_size=100").Items {
		if it.RunID == runID && it.Channel == channel {
			return it
		}
	}
	t.Fatalf("no %s notification for %s", channel, runID)
	return notify.QueueItem{}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func TestNotificationSettingsAPI(t *testing.T) {
	t.Parallel()
	b := setupNotify(t)
	resp := b.c.Do(t, http.MethodGet, "/api/notifications/settings", nil)
	var set notify.Settings
	resp.Decode(t, &set)
	if resp.Status != http.StatusOK || !reflect.DeepEqual(set, notify.DefaultSettings()) {
		t.Fatalf("GET settings = %d %+v", resp.Status, set)
	}

	// A partial document changes only what it names.
	resp = b.c.Do(t, http.MethodPut, "/api/notifications/settings", `{"channels":{"wecom_bot":{"enabled":false}},"templates":{"email_subject":"[{{status_text}}] {{job}}"}}`)
	if resp.Status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", resp.Status, resp.Body)
	}
	b.c.Do(t, http.MethodGet, "/api/notifications/settings", nil).Decode(t, &set)
	want := notify.DefaultSettings()
	want.Channels["wecom_bot"] = notify.ChannelSettings{Enabled: false}
	want.Templates.Run["email_subject"] = "[{{status_text}}] {{job}}"
	if !reflect.DeepEqual(set, want) {
		t.Fatalf("settings after PUT = %+v", set)
	}

	// The document keeps its shape: channels and templates in the original's order.
	raw := string(b.c.Do(t, http.MethodGet, "/api/notifications/settings", nil).Body)
	if !strings.Contains(raw, `"channels":{"wecom_bot":{"enabled":false},"email":{"enabled":true},"webhook":{"enabled":true}`) ||
		!strings.Contains(raw, `"templates":{"wecom_markdown":`) ||
		!strings.Contains(raw, `"email_subject":"[{{status_text}}] {{job}}","email_body":`) || !strings.Contains(raw, `,"verify_failed":{"wecom_markdown":`) {
		t.Fatalf("settings document = %s", raw)
	}

	for body, wantCode := range map[string]string{
		`{"channels":{"no_such_channel":{"enabled":true}}}`: "invalid_json",
		`{"templates":{"no_such_channel_text":"x"}}`:        "invalid_json",
		`{"templates":{"verify_failed":{"nope":"x"}}}`:      "invalid_json",
		`{"channels":{"email":{"enabled":"yes"}}}`:          "invalid_json",
		`{"templates":{"email_body":"  "}}`:                 "invalid_template",
		`{"enabled":true,"colour":"red"}`:                   "invalid_json",
		`{"enabled":"yes"}`:                                 "invalid_json",
	} {
		resp := b.c.Do(t, http.MethodPut, "/api/notifications/settings", body)
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != wantCode {
			t.Errorf("PUT %s: %d %s, want 400 %s", body, resp.Status, resp.Body, wantCode)
		}
	}
	if resp := b.c.Do(t, http.MethodPut, "/api/notifications/settings", `{"templates":{"email_body":""}}`); !strings.Contains(string(resp.Body), `"field":"templates.email_body"`) {
		t.Errorf("blank template error does not name the field: %s", resp.Body)
	}

	// Without the CSRF token, a mutation is refused by the session middleware.
	anon := b.hub.Client(t)
	if resp := anon.Do(t, http.MethodGet, "/api/notifications/settings", nil); resp.Status != http.StatusUnauthorized {
		t.Fatalf("anonymous GET: %d", resp.Status)
	}
	noCSRF := *b.c
	noCSRF.CSRF = ""
	if resp := noCSRF.Do(t, http.MethodPut, "/api/notifications/settings", `{"enabled":false}`); resp.Status != http.StatusUnauthorized {
		t.Fatalf("PUT without CSRF: %d", resp.Status)
	}
}

func TestNotificationTemplateValidationAPI(t *testing.T) {
	t.Parallel()
	b := setupNotify(t)
	resp := b.c.Do(t, http.MethodPost, "/api/notifications/templates/validate", map[string]any{"templates": map[string]string{
		"wecom_markdown": "**{{title}}** {{jobname}}", "email_subject": "{{ status }}", "email_body": "{{run_url}}",
	}})
	var v struct {
		Unknown      []notify.UnknownPlaceholder `json:"unknown_placeholders"`
		Placeholders []string                    `json:"placeholders"`
	}
	resp.Decode(t, &v)
	if resp.Status != http.StatusOK || fmt.Sprint(v.Unknown) != "[{wecom_markdown {{jobname}}} {email_subject {{ status }}}]" ||
		len(v.Placeholders) != len(notify.Placeholders) {
		t.Fatalf("validate = %d %s", resp.Status, resp.Body)
	}
	resp = b.c.Do(t, http.MethodPost, "/api/notifications/templates/validate", `{"templates":{"email_subject":" "}}`)
	if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_template" {
		t.Fatalf("blank: %d %s", resp.Status, resp.Body)
	}
	resp = b.c.Do(t, http.MethodPost, "/api/notifications/templates/validate", `{"templates":{}}`)
	if resp.Status != http.StatusOK || !strings.Contains(string(resp.Body), `"unknown_placeholders":[]`) {
		t.Fatalf("defaults: %d %s", resp.Status, resp.Body)
	}
	resp = b.c.Do(t, http.MethodPost, "/api/notifications/templates/validate", `{"templates":{"no_such_channel_text":"x"}}`)
	if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_json" || !strings.Contains(string(resp.Body), `"field":"no_such_channel_text"`) {
		t.Fatalf("unknown template: %d %s", resp.Status, resp.Body)
	}
	// The web UI sends the templates object itself.
	resp = b.c.Do(t, http.MethodPost, "/api/notifications/templates/validate", `{"email_subject":"{{nope}}","email_body":"{{job_name}}"}`)
	if resp.Status != http.StatusOK || !strings.Contains(string(resp.Body), `"unknown_placeholders":[{"template":"email_subject","placeholder":"{{nope}}"}]`) {
		t.Fatalf("bare templates: %d %s", resp.Status, resp.Body)
	}
	resp = b.c.Do(t, http.MethodPost, "/api/notifications/templates/validate", `{"email_body":""}`)
	if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_template" {
		t.Fatalf("bare blank: %d %s", resp.Status, resp.Body)
	}
	resp = b.c.Do(t, http.MethodPost, "/api/notifications/templates/validate", `{"subject":"x"}`)
	if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_json" {
		t.Fatalf("unknown field: %d %s", resp.Status, resp.Body)
	}
}

func TestNotificationDestinationsAPI(t *testing.T) {
	t.Parallel()
	b := setupNotify(t)
	b.putSecret(t, "wecom-bot", "team", secrets.WeComBot{WebhookURL: "https://wecom.example/send?key=k"})
	b.putSecret(t, "smtp", "ops", secrets.SMTP{Host: "mail.example", Port: 25, From: "b@example.test", To: []string{"o@example.test"}, TLS: "none"})
	b.putSecret(t, "webhook", "hook one", secrets.Webhook{URL: "https://hooks.example/in"})
	b.finishRun(t, "run-1", notify.JobNotifications{})

	resp := b.c.Do(t, http.MethodPost, "/api/notifications/destinations/wecom-bot/team/enabled", map[string]bool{"enabled": false})
	if resp.Status != http.StatusNoContent {
		t.Fatalf("disable: %d %s", resp.Status, resp.Body)
	}
	resp = b.c.Do(t, http.MethodPost, "/api/notifications/destinations/webhook/hook%20one/enabled", map[string]bool{"enabled": true})
	if resp.Status != http.StatusNoContent {
		t.Fatalf("enable an escaped name: %d %s", resp.Status, resp.Body)
	}
	resp = b.c.Do(t, http.MethodGet, "/api/notifications/destinations", nil)
	var ds []notify.Destination
	resp.Decode(t, &ds)
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s/%s=%t", d.Channel, d.Name, d.Enabled))
	}
	if strings.Join(got, " ") != "email/ops=true webhook/hook one=true wecom_bot/team=false" {
		t.Fatalf("destinations = %s", resp.Body)
	}
	if it := b.item(t, "run-1", "wecom_bot"); it.Status != storage.NotificationCanceled || *it.LastError != notify.ReasonDestinationDisabled || it.DestinationEnabled {
		t.Fatalf("wecom row = %+v", it)
	}
	if it := b.item(t, "run-1", "email"); it.Status != storage.NotificationQueued {
		t.Fatalf("email row = %+v", it)
	}

	for _, tc := range []struct {
		path, body string
		status     int
		code       string
	}{
		{"/api/notifications/destinations/sms/team/enabled", `{"enabled":true}`, 400, "invalid_channel"},
		{"/api/notifications/destinations/email/nobody/enabled", `{"enabled":true}`, 404, "destination_not_found"},
		{"/api/notifications/destinations/email/ops/enabled", `{}`, 400, "invalid_json"},
		{"/api/notifications/destinations/email/%20/enabled", `{"enabled":true}`, 400, "invalid_name"},
		{"/api/notifications/destinations/email/nobody/test", ``, 404, "destination_not_found"},
	} {
		var body any
		if tc.body != "" {
			body = tc.body
		}
		if resp := b.c.Do(t, http.MethodPost, tc.path, body); resp.Status != tc.status || resp.ErrorCode() != tc.code {
			t.Errorf("POST %s: %d %s, want %d %s", tc.path, resp.Status, resp.Body, tc.status, tc.code)
		}
	}
}

// TestNotificationDestinationNamesAreDecodedOnce: a name is unescaped once, like /api/secrets
// does it. Unescaping chi's already decoded parameter again refused 100%ok and turned a%41 into aA.
func TestNotificationDestinationNamesAreDecodedOnce(t *testing.T) {
	t.Parallel()
	b := setupNotify(t)
	for _, name := range []string{"100%ok", "a%41", "aA"} {
		b.putSecret(t, "webhook", name, secrets.Webhook{URL: "https://hooks.example/in"})
	}
	for _, name := range []string{"100%ok", "a%41"} {
		path := "/api/notifications/destinations/webhook/" + url.PathEscape(name) + "/enabled"
		if resp := b.c.Do(t, http.MethodPost, path, map[string]bool{"enabled": false}); resp.Status != http.StatusNoContent {
			t.Fatalf("disable %q: %d %s", name, resp.Status, resp.Body)
		}
	}
	var ds []notify.Destination
	b.c.Do(t, http.MethodGet, "/api/notifications/destinations", nil).Decode(t, &ds)
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s=%t", d.Name, d.Enabled))
	}
	if strings.Join(got, " ") != "100%ok=false a%41=false aA=true" {
		t.Fatalf("destinations = %v, want exactly 100%%ok and a%%41 disabled", got)
	}
	// An escaped slash is a name with a slash in it: not a valid name.
	resp := b.c.Do(t, http.MethodPost, "/api/notifications/destinations/webhook/a%2Fb/enabled", map[string]bool{"enabled": false})
	if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_name" {
		t.Fatalf("a%%2Fb: %d %s", resp.Status, resp.Body)
	}
}

func TestNotificationTestSendAPI(t *testing.T) {
	t.Parallel()
	b := setupNotify(t)
	got := make(chan []byte, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- body
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	wecom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"errcode":93000,"errmsg":"invalid webhook url, hint: [abc]"}`)
	}))
	t.Cleanup(wecom.Close)
	b.putSecret(t, "webhook", "hook", secrets.Webhook{URL: hook.URL})
	b.putSecret(t, "wecom-bot", "team", secrets.WeComBot{WebhookURL: wecom.URL + "/send?key=secret-key-1"})
	// Switches do not apply to a test send.
	if resp := b.c.Do(t, http.MethodPut, "/api/notifications/settings", `{"enabled":false}`); resp.Status != http.StatusNoContent {
		t.Fatal(resp.Status)
	}

	if resp := b.c.Do(t, http.MethodPost, "/api/notifications/destinations/webhook/hook/test", nil); resp.Status != http.StatusNoContent {
		t.Fatalf("test webhook: %d %s", resp.Status, resp.Body)
	}
	var body webhook.Body
	if err := json.Unmarshal(<-got, &body); err != nil || body.Event != notify.WebhookEventTest || !strings.Contains(body.Text, "Destination: hook") {
		t.Fatalf("test body = %+v %v", body, err)
	}

	resp := b.c.Do(t, http.MethodPost, "/api/notifications/destinations/wecom_bot/team/test", nil)
	var env struct {
		Error, Message string
		Details        struct{ Reason string }
	}
	resp.Decode(t, &env)
	if resp.Status != http.StatusBadGateway || env.Error != "notification_test_failed" ||
		env.Message != "wecom webhook error 93000: invalid webhook url, hint: [abc]" || env.Details.Reason != string(send.KindAuth) {
		t.Fatalf("failed test: %d %s", resp.Status, resp.Body)
	}
	if strings.Contains(string(resp.Body), "secret-key-1") || strings.Contains(b.hub.Logs.String(), "secret-key-1") {
		t.Fatal("the WeCom key reached the answer or the logs")
	}
}

func TestNotificationQueueAPI(t *testing.T) {
	t.Parallel()
	b := setupNotify(t)
	b.putSecret(t, "smtp", "ops", secrets.SMTP{Host: "mail.example", Port: 25, From: "b@example.test", To: []string{"o@example.test"}, TLS: "none"})
	b.putSecret(t, "webhook", "hook", secrets.Webhook{URL: "https://hooks.example/in"})
	for i := range 5 {
		b.finishRun(t, fmt.Sprintf("run-%d", i), notify.JobNotifications{})
		b.hub.Clock.Advance(time.Second)
	}
	p := b.queue(t, "?status=queued&channel=email")
	if p.Total != 5 || len(p.Items) != 5 || p.Items[0].RunID != "run-4" || p.Items[0].JobName != "Nightly" || p.Items[0].Destination != "ops" {
		t.Fatalf("filtered page = %+v", p)
	}
	var ids []string
	p = b.queue(t, "?page_size=3")
	for {
		for _, it := range p.Items {
			ids = append(ids, it.ID)
		}
		if p.NextCursor == nil {
			break
		}
		p = b.queue(t, "?page_size=3&cursor="+*p.NextCursor)
	}
	if len(ids) != 10 {
		t.Fatalf("cursor pages gave %d rows, want 10", len(ids))
	}
	if p := b.queue(t, "?page=2&page_size=4&status[]=queued"); len(p.Items) != 4 || p.Items[0].ID != ids[4] || p.Page != 2 {
		t.Fatalf("page 2 = %+v", p)
	}
	for query, code := range map[string]string{
		"?status=lost": "invalid_status", "?channel=sms": "invalid_channel", "?page=0": "invalid_page",
		"?page_size=x": "invalid_page_size", "?cursor=%21%21": "invalid_cursor",
	} {
		if resp := b.c.Do(t, http.MethodGet, "/api/notifications/queue"+query, nil); resp.Status != 400 || resp.ErrorCode() != code {
			t.Errorf("queue%s: %d %s, want 400 %s", query, resp.Status, resp.Body, code)
		}
	}

	// Turning notifications off cancels everything queued.
	if resp := b.c.Do(t, http.MethodPut, "/api/notifications/settings", `{"enabled":false}`); resp.Status != http.StatusNoContent {
		t.Fatal(resp.Status)
	}
	if p := b.queue(t, "?status=canceled"); p.Total != 10 || *p.Items[0].LastError != notify.ReasonNotificationsDisabled {
		t.Fatalf("after global off: %+v", p)
	}
}

// TestNotificationQueueItemsCarryTheRowFields: notifications spec §7, items carry the row fields
// (secret_name among them) plus destination.
func TestNotificationQueueItemsCarryTheRowFields(t *testing.T) {
	t.Parallel()
	b := setupNotify(t)
	b.putSecret(t, "smtp", "ops", secrets.SMTP{Host: "mail.example", Port: 25, From: "b@example.test", To: []string{"o@example.test"}, TLS: "none"})
	b.finishRun(t, "run-1", notify.JobNotifications{})
	_, page := b.c.Get(t, "/api/notifications/queue")
	items, _ := page["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("queue = %v", page)
	}
	it := items[0].(map[string]any)
	for _, k := range []string{"id", "run_id", "channel", "secret_name", "status", "attempts", "next_attempt_at", "created_at",
		"updated_at", "sent_at", "last_error", "last_error_kind", "job_id", "job_name", "destination", "destination_deleted",
		"destination_enabled"} {
		if _, ok := it[k]; !ok {
			t.Errorf("queue item has no %s: %v", k, it)
		}
	}
	if it["secret_name"] != "ops" || it["destination"] != "ops" || it["channel"] != "email" {
		t.Fatalf("queue item = %v", it)
	}
}

// TestNotificationRetryAndCancelAPI drives a real delivery: the receiver fails, the row waits for
// its retry; cancel stops it, retry-now wakes the worker, which delivers at once.
func TestNotificationRetryAndCancelAPI(t *testing.T) {
	t.Parallel()
	b := setupNotify(t)
	var calls atomic.Int32
	var fail atomic.Bool
	fail.Store(true)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	b.putSecret(t, "webhook", "hook", secrets.Webhook{URL: hook.URL})
	b.startWorker(t)
	b.finishRun(t, "run-1", notify.JobNotifications{})
	waitFor(t, "first attempt", func() bool { return b.item(t, "run-1", "webhook").Attempts == 1 })
	it := b.item(t, "run-1", "webhook")
	if it.Status != storage.NotificationQueued || *it.LastError != "webhook http 503: (empty body)" ||
		it.NextAttemptAt != b.hub.Clock.Now().Add(30*time.Second).Unix() {
		t.Fatalf("after a failure: %+v", it)
	}

	post := func(path string) *apitest.Response { return b.c.Do(t, http.MethodPost, path, nil) }
	if resp := post("/api/notifications/queue/" + it.ID + "/retry-now"); resp.Status != 409 || resp.ErrorCode() != "not_retryable" {
		t.Fatalf("retry of a queued row: %d %s", resp.Status, resp.Body)
	}
	if resp := post("/api/notifications/queue/" + it.ID + "/cancel"); resp.Status != http.StatusNoContent {
		t.Fatalf("cancel: %d %s", resp.Status, resp.Body)
	}
	if resp := post("/api/notifications/queue/" + it.ID + "/cancel"); resp.Status != 409 || resp.ErrorCode() != "not_cancelable" {
		t.Fatalf("second cancel: %d %s", resp.Status, resp.Body)
	}
	for _, path := range []string{"/api/notifications/queue/nope/cancel", "/api/notifications/queue/nope/retry-now"} {
		if resp := post(path); resp.Status != 404 || resp.ErrorCode() != "notification_not_found" {
			t.Fatalf("%s: %d %s", path, resp.Status, resp.Body)
		}
	}
	if resp := post("/api/notifications/destinations/webhook/hook/enabled"); resp.Status != 400 {
		t.Fatalf("enabled without a body: %d", resp.Status)
	}
	if resp := b.c.Do(t, http.MethodPost, "/api/notifications/destinations/webhook/hook/enabled", `{"enabled":false}`); resp.Status != 204 {
		t.Fatal(resp.Status)
	}
	if resp := post("/api/notifications/queue/" + it.ID + "/retry-now"); resp.Status != 409 || resp.ErrorCode() != "destination_disabled" {
		t.Fatalf("retry with the destination off: %d %s", resp.Status, resp.Body)
	}
	if resp := b.c.Do(t, http.MethodPost, "/api/notifications/destinations/webhook/hook/enabled", `{"enabled":true}`); resp.Status != 204 {
		t.Fatal(resp.Status)
	}

	// Retry now: the worker is woken and delivers without any clock movement.
	fail.Store(false)
	if resp := post("/api/notifications/queue/" + it.ID + "/retry-now"); resp.Status != http.StatusNoContent {
		t.Fatalf("retry-now: %d %s", resp.Status, resp.Body)
	}
	waitFor(t, "delivery after retry-now", func() bool { return b.item(t, "run-1", "webhook").Status == storage.NotificationSent })
	if it := b.item(t, "run-1", "webhook"); it.Attempts != 1 || it.SentAt == nil || calls.Load() != 2 {
		t.Fatalf("after retry-now: %+v, %d calls", it, calls.Load())
	}
	if resp := post("/api/notifications/queue/" + it.ID + "/retry-now"); resp.Status != 409 || resp.ErrorCode() != "not_retryable" {
		t.Fatalf("retry of a sent row: %d %s", resp.Status, resp.Body)
	}
}

// TestDeletingADestinationCancelsItsQueue deletes a destination through the secrets API: what
// was queued for it is canceled, and the queue flags its rows.
func TestDeletingADestinationCancelsItsQueue(t *testing.T) {
	t.Parallel()
	b := setupNotify(t)
	b.putSecret(t, "webhook", "hook", secrets.Webhook{URL: "https://hooks.example/in"})
	b.putSecret(t, "smtp", "ops", secrets.SMTP{Host: "mail.example", Port: 25, From: "b@example.test", To: []string{"o@example.test"}, TLS: "none"})
	b.finishRun(t, "run-1", notify.JobNotifications{})
	if resp := b.c.Do(t, http.MethodDelete, "/api/secrets/webhook/hook", nil); resp.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", resp.Status, resp.Body)
	}
	it := b.item(t, "run-1", "webhook")
	if it.Status != storage.NotificationCanceled || *it.LastError != notify.ReasonDestinationDeleted || !it.DestinationDeleted || it.DestinationEnabled {
		t.Fatalf("webhook row after delete = %+v", it)
	}
	if it := b.item(t, "run-1", "email"); it.Status != storage.NotificationQueued || it.DestinationDeleted {
		t.Fatalf("email row = %+v", it)
	}
	var ds []notify.Destination
	b.c.Do(t, http.MethodGet, "/api/notifications/destinations", nil).Decode(t, &ds)
	if len(ds) != 1 || ds[0].Channel != "email" {
		t.Fatalf("destinations after delete = %+v", ds)
	}
	if resp := b.c.Do(t, http.MethodPost, "/api/notifications/queue/"+it.ID+"/retry-now", nil); resp.Status != 409 {
		t.Fatalf("retry of a queued row: %d", resp.Status)
	}
	if resp := b.c.Do(t, http.MethodPost, "/api/notifications/queue/"+b.item(t, "run-1", "webhook").ID+"/retry-now", nil); resp.Status != 409 || resp.ErrorCode() != "destination_deleted" {
		t.Fatalf("retry with the destination gone: %d %s", resp.Status, resp.Body)
	}
}

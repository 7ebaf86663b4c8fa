package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/notify/channel/webhook"
	"github.com/bastion-backup/bastion/engine/notify/send"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/storage"
)

func TestSettingsStoredWithDefaultsOnFirstRead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := b.db.Reader().GetSetting(b.ctx, storage.SettingNotifications); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("settings exist before first read: %v", err)
	}
	s, err := b.svc.Settings(b.ctx)
	if err != nil || !reflect.DeepEqual(s, DefaultSettings()) {
		t.Fatalf("settings = %+v %v", s, err)
	}
	raw, err := b.db.Reader().GetSetting(b.ctx, storage.SettingNotifications)
	if err != nil || raw != encodeSettings(DefaultSettings()) {
		t.Fatalf("stored %q %v", raw, err)
	}
}

func TestUpdateSettingsCancelsQueuedRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	addAllKinds(t, b)
	b.finishRun(t, "run-1", storage.RunSuccess, JobNotifications{})
	set := DefaultSettings()
	set.Channels[ChannelWeComBot] = ChannelSettings{Enabled: false}
	set.Templates.Run["email_body"] = "{{job_name}} {{jobname}}"
	res, err := b.svc.UpdateSettings(b.ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	if res.Canceled != 1 || fmt.Sprint(res.UnknownPlaceholders) != "[{email_body {{jobname}}}]" {
		t.Fatalf("update = %+v", res)
	}
	if n := b.row(t, "run-1", ChannelWeComBot, "team"); n.Status != storage.NotificationCanceled || *n.LastError != ReasonChannelDisabled {
		t.Fatalf("wecom row = %s %v", n.Status, n.LastError)
	}
	if got, _ := b.svc.Settings(b.ctx); !reflect.DeepEqual(got, set) {
		t.Fatalf("stored settings = %+v", got)
	}
	set.Enabled = false
	if res, err := b.svc.UpdateSettings(b.ctx, set); err != nil || res.Canceled != 2 {
		t.Fatalf("global off canceled %d (%v), want 2", res.Canceled, err)
	}
	for _, n := range b.rows(t, "run-1") {
		if n.Status != storage.NotificationCanceled {
			t.Fatalf("%s/%s still %s", n.Channel, n.SecretName, n.Status)
		}
	}
	set.Templates.Run["wecom_markdown"] = "  "
	if _, err := b.svc.UpdateSettings(b.ctx, set); !isCode(err, "invalid_template") {
		t.Fatalf("blank template: %v", err)
	}
	if len(b.svc.wake) != 1 {
		t.Fatal("a settings change did not wake the worker")
	}
}

func isCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

func TestDestinationsAndEnableFlags(t *testing.T) {
	t.Parallel()
	b := setup(t)
	addAllKinds(t, b)
	b.finishRun(t, "run-1", storage.RunSuccess, JobNotifications{})
	ds, err := b.svc.Destinations(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s/%s=%t", d.Channel, d.Name, d.Enabled))
	}
	if strings.Join(got, " ") != "email/ops=true webhook/hook=true wecom_bot/other=false wecom_bot/team=true" {
		t.Fatalf("destinations = %v", got)
	}
	n, err := b.svc.SetDestinationEnabled(b.ctx, ChannelEmail, "ops", false)
	if err != nil || n != 1 {
		t.Fatalf("disable canceled %d (%v)", n, err)
	}
	if r := b.row(t, "run-1", ChannelEmail, "ops"); *r.LastError != ReasonDestinationDisabled {
		t.Fatalf("email row: %v", r.LastError)
	}
	if r := b.row(t, "run-1", ChannelWebhook, "hook"); r.Status != storage.NotificationQueued {
		t.Fatal("disabling one destination touched another")
	}
	if _, err := b.svc.SetDestinationEnabled(b.ctx, ChannelEmail, "nope", true); !errors.Is(err, ErrDestinationNotFound) {
		t.Fatalf("missing destination: %v", err)
	}
	if _, err := b.svc.SetDestinationEnabled(b.ctx, "sms", "ops", true); !isCode(err, "invalid_channel") {
		t.Fatalf("bad channel: %v", err)
	}
	// Deleting the secret (in the secrets API's transaction) cancels what is queued for it.
	if err := b.db.Write(b.ctx, func(q storage.Q) error {
		n, err := b.svc.DestinationDeleted(b.ctx, q, secrets.KindWebhook, "hook")
		if err == nil && n != 1 {
			err = fmt.Errorf("canceled %d", n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if r := b.row(t, "run-1", ChannelWebhook, "hook"); *r.LastError != ReasonDestinationDeleted {
		t.Fatalf("webhook row: %v", r.LastError)
	}
}

func TestRetryNowAndCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	addAllKinds(t, b)
	b.finishRun(t, "run-1", storage.RunSuccess, JobNotifications{})
	<-b.svc.wake
	hook := b.row(t, "run-1", ChannelWebhook, "hook").ID
	team := b.row(t, "run-1", ChannelWeComBot, "team").ID
	ops := b.row(t, "run-1", ChannelEmail, "ops").ID

	if err := b.svc.RetryNow(b.ctx, hook); !errors.Is(err, ErrNotRetryable) {
		t.Fatalf("retry of a queued row: %v", err)
	}
	if err := b.svc.Cancel(b.ctx, hook); err != nil {
		t.Fatal(err)
	}
	if r := b.row(t, "run-1", ChannelWebhook, "hook"); r.Status != storage.NotificationCanceled || *r.LastError != ReasonUser {
		t.Fatalf("canceled row = %s %v", r.Status, r.LastError)
	}
	if err := b.svc.Cancel(b.ctx, hook); !errors.Is(err, ErrNotCancelable) {
		t.Fatalf("second cancel: %v", err)
	}
	for _, err := range []error{b.svc.Cancel(b.ctx, "nope"), b.svc.RetryNow(b.ctx, "nope")} {
		if !errors.Is(err, ErrNotificationNotFound) {
			t.Fatalf("missing row: %v", err)
		}
	}
	b.clock.Advance(time.Minute)
	if err := b.svc.RetryNow(b.ctx, hook); err != nil {
		t.Fatal(err)
	}
	if r := b.row(t, "run-1", ChannelWebhook, "hook"); r.Status != storage.NotificationQueued || r.Attempts != 0 ||
		r.NextAttemptAt != t0.Add(time.Minute).Unix() || len(b.svc.wake) != 1 {
		t.Fatalf("retried row = %+v (wake pending: %d)", r, len(b.svc.wake))
	}

	// Refusals while something is off.
	if _, err := b.db.Writer().Exec(b.ctx, `UPDATE notifications SET status = 'failed'`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.SetDestinationEnabled(b.ctx, ChannelWeComBot, "team", false); err != nil {
		t.Fatal(err)
	}
	if err := b.svc.RetryNow(b.ctx, team); !errors.Is(err, ErrDestinationDisabled) {
		t.Fatalf("disabled destination: %v", err)
	}
	if _, err := b.db.Writer().Exec(b.ctx, `DELETE FROM secrets WHERE kind = 'smtp'`); err != nil {
		t.Fatal(err)
	}
	if err := b.svc.RetryNow(b.ctx, ops); !errors.Is(err, ErrDestinationDeleted) {
		t.Fatalf("deleted destination: %v", err)
	}
	set := DefaultSettings()
	set.Channels[ChannelWebhook] = ChannelSettings{Enabled: false}
	if _, err := b.svc.UpdateSettings(b.ctx, set); err != nil {
		t.Fatal(err)
	}
	if err := b.svc.RetryNow(b.ctx, hook); !errors.Is(err, ErrChannelDisabled) {
		t.Fatalf("channel off: %v", err)
	}
	set.Enabled = false
	if _, err := b.svc.UpdateSettings(b.ctx, set); err != nil {
		t.Fatal(err)
	}
	if err := b.svc.RetryNow(b.ctx, hook); !errors.Is(err, ErrNotificationsDisabled) {
		t.Fatalf("all off: %v", err)
	}
}

func TestQueuePages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	addAllKinds(t, b)
	for i := range 9 { // 27 rows, three per second
		b.finishRun(t, fmt.Sprintf("run-%d", i), storage.RunSuccess, JobNotifications{})
		b.clock.Advance(time.Second)
	}
	var seen []QueueItem
	page, err := b.svc.Queue(b.ctx, QueueQuery{PageSize: 10})
	for err == nil {
		if page.Total != 27 || page.PageSize != 10 {
			t.Fatalf("page total %d size %d", page.Total, page.PageSize)
		}
		seen = append(seen, page.Items...)
		if page.NextCursor == nil {
			break
		}
		page, err = b.svc.Queue(b.ctx, QueueQuery{PageSize: 10, Cursor: *page.NextCursor})
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 27 {
		t.Fatalf("cursor paging returned %d rows, want 27", len(seen))
	}
	ids := map[string]bool{}
	for i, it := range seen {
		ids[it.ID] = true
		if i > 0 && (it.CreatedAt > seen[i-1].CreatedAt || (it.CreatedAt == seen[i-1].CreatedAt && it.ID > seen[i-1].ID)) {
			t.Fatalf("rows out of order at %d", i)
		}
		if it.JobName != "Nightly" || it.JobID != "job-1" || !it.DestinationEnabled || it.DestinationDeleted {
			t.Fatalf("item = %+v", it)
		}
	}
	if len(ids) != 27 {
		t.Fatalf("cursor paging repeated rows: %d unique", len(ids))
	}
	third, err := b.svc.Queue(b.ctx, QueueQuery{Page: 3, PageSize: 10})
	if err != nil || len(third.Items) != 7 || third.Items[0].ID != seen[20].ID || third.NextCursor != nil {
		t.Fatalf("page 3 = %d items, %v", len(third.Items), err)
	}
	emails, err := b.svc.Queue(b.ctx, QueueQuery{Channels: []string{"email", "email"}, Statuses: []string{"queued"}})
	if err != nil || emails.Total != 9 || len(emails.Items) != 9 || emails.Items[0].Channel != "email" {
		t.Fatalf("email filter = %d/%d %v", len(emails.Items), emails.Total, err)
	}
	for _, q := range []QueueQuery{{Statuses: []string{"lost"}}, {Channels: []string{"sms"}}, {Cursor: "!!"}, {Cursor: EncodeCursor(storage.NotificationCursor{})}} {
		if _, err := b.svc.Queue(b.ctx, q); !errors.As(err, new(*Error)) {
			t.Errorf("query %+v: %v, want a client error", q, err)
		}
	}
	raw, _ := json.Marshal(third)
	for _, key := range []string{`"next_cursor":null`, `"destination":"`, `"destination_deleted":false`, `"total":27`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("page JSON lacks %s: %s", key, raw)
		}
	}
}

func TestTestDestination(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := newHook(t, ok204)
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: h.srv.URL, Secret: "k-123456"})
	wecom := newHook(t, func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"errcode":93000,"errmsg":"invalid webhook url, hint: [1700000000]"}`)
	})
	b.secrets.put(t, secrets.KindWeComBot, "team", secrets.WeComBot{WebhookURL: wecom.srv.URL + "/send?key=the-key-123"})
	// Switches are ignored by a test send.
	set := DefaultSettings()
	set.Enabled = false
	if _, err := b.svc.UpdateSettings(b.ctx, set); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.SetDestinationEnabled(b.ctx, ChannelWebhook, "hook", false); err != nil {
		t.Fatal(err)
	}
	if err := b.svc.TestDestination(b.ctx, ChannelWebhook, "hook"); err != nil {
		t.Fatal(err)
	}
	req := <-h.got
	var body webhook.Body
	if err := json.Unmarshal(req.body, &body); err != nil || body.Event != WebhookEventTest ||
		!strings.Contains(body.Text, "Destination: hook\nTime: 2025-03-01T12:00:00Z\n") ||
		req.header.Get(send.HeaderSignature) != send.Signature("k-123456", req.body) {
		t.Fatalf("test body = %s (%v)", req.body, err)
	}

	err := b.svc.TestDestination(b.ctx, ChannelWeComBot, "team")
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindUpstream || e.SendKind != send.KindAuth ||
		e.Message != "wecom webhook error 93000: invalid webhook url, hint: [1700000000]" {
		t.Fatalf("wecom test: %#v", err)
	}
	if err := b.svc.TestDestination(b.ctx, ChannelEmail, "none"); !errors.Is(err, ErrDestinationNotFound) {
		t.Fatalf("missing destination: %v", err)
	}
	if len(b.rows(t, "run-1")) != 0 {
		t.Fatal("a test send queued something")
	}
}

// TestWorkerDeliversEmail runs the whole path against a real SMTP server.
func TestWorkerDeliversEmail(t *testing.T) {
	t.Parallel()
	addr, api := testtool.StartMailpit(t)
	b := setup(t)
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	b.secrets.put(t, secrets.KindSMTP, "ops", secrets.SMTP{Host: host, Port: p, From: "Bastion <bastion@example.test>",
		To: []string{"a@example.test", "b@example.test"}, TLS: "none"})
	b.start(t)
	b.finishRun(t, "run-1", storage.RunSuccess, JobNotifications{},
		func(r *storage.Run) {
			r.SummaryJSON = ptr(`{"target":{"type":"local_dir","run_dir":"/b/job-1/run-1"}}`)
		})
	n := b.waitRow(t, "run-1", ChannelEmail, "ops", "sent", status(storage.NotificationSent))
	msgs := testtool.MailpitMessages(t, api)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	body := strings.ReplaceAll(m.Text, "\r\n", "\n")
	if m.MessageID != send.MessageID(n.ID, "bastion@example.test") || m.Subject != "Bastion Succeeded - Nightly" ||
		len(m.To) != 2 || !strings.Contains(body, "Status: success\n") || !strings.Contains(body, "Target: local_dir /b/job-1/run-1\n") {
		t.Fatalf("message = %+v\n%s", m, body)
	}
}

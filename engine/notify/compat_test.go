package notify

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/notify/channel"
	"github.com/bastion-backup/bastion/engine/notify/channel/webhook"
	"github.com/bastion-backup/bastion/engine/notify/send"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/storage"
)

// The golden documents below were produced by the code before channels became drivers (one
// Transport method and one settings field per channel). Stored settings, queued rows, job specs
// and webhook receivers must see no difference.

const goldenSettings = `{"enabled":true,"channels":{"wecom_bot":{"enabled":true},"email":{"enabled":true},"webhook":{"enabled":true}},"templates":{"wecom_markdown":"**{{title}}**\n\u003e Job: {{job_name}}\n\u003e Run: {{run_id}}\n\u003e Started: {{started_at}}\n\u003e Ended: {{ended_at}}\n{{target_line_wecom}}{{consistency_line_wecom}}{{error_line_wecom}}","email_subject":"Bastion {{status_text}} - {{job_name}}","email_body":"Bastion backup\n\nJob: {{job_name}}\nRun: {{run_id}}\nStatus: {{status}}\nStarted: {{started_at}}\nEnded: {{ended_at}}\n{{target_line_email}}{{consistency_line_email}}{{error_line_email}}","verify_failed":{"wecom_markdown":"**{{title}}**\n\u003e Job: {{job_name}}\n\u003e Snapshot: {{run_id}}\n\u003e Drill: {{operation_id}}\n\u003e Ended: {{ended_at}}\n{{target_line_wecom}}{{error_line_wecom}}","email_subject":"Bastion restore drill failed - {{job_name}}","email_body":"Bastion restore drill\n\nThe scheduled verification of a snapshot failed: the snapshot may not restore.\n\nJob: {{job_name}}\nSnapshot (run): {{run_id}}\nDrill (operation): {{operation_id}} {{operation_url}}\nStarted: {{started_at}}\nEnded: {{ended_at}}\n{{target_line_email}}{{error_line_email}}"}}}`

const goldenRunBody = `{"event":"run_finished","delivery_id":"n-1","sent_at":"2025-03-01T12:05:00Z","title":"Bastion backup failed","status":"failed","status_text":"Failed","job_id":"job-1","job_name":"Nightly","run_id":"run-1","run_url":"https://b.example/runs/run-1","started_at":"2025-03-01T12:00:00Z","ended_at":"2025-03-01T12:01:30Z","target_type":"webdav","target_location":"https://dav/x/","error":"source_consistency","consistency_changed_total":4,"subject":"Bastion Failed - Nightly","text":"Bastion backup\n\nJob: Nightly\nRun: run-1\nStatus: failed\nStarted: 2025-03-01T12:00:00Z\nEnded: 2025-03-01T12:01:30Z\nTarget: webdav https://dav/x/\nFailed by policy: source changed during backup: 4\nError: source_consistency (the source changed while it was being backed up)\n"}`

const goldenDrillBody = `{"event":"verify_failed","delivery_id":"n-2","sent_at":"2025-03-01T12:05:00Z","title":"Bastion restore drill failed","status":"failed","status_text":"Drill failed","job_id":"job-1","job_name":"Nightly","run_id":"run-1","run_url":"https://b.example/runs/run-1","started_at":"2025-03-01T12:01:40Z","ended_at":"2025-03-01T12:01:30Z","target_type":"webdav","target_location":"https://dav/x/","error":"verify_failed: 1 of 3 files","consistency_changed_total":0,"operation_id":"op-1","operation_url":"https://b.example/operations/op-1","subject":"Bastion restore drill failed - Nightly","text":"Bastion restore drill\n\nThe scheduled verification of a snapshot failed: the snapshot may not restore.\n\nJob: Nightly\nSnapshot (run): run-1\nDrill (operation): op-1 https://b.example/operations/op-1\nStarted: 2025-03-01T12:01:40Z\nEnded: 2025-03-01T12:01:30Z\nTarget: webdav https://dav/x/\nError: verify_failed: 1 of 3 files\n"}`

const goldenTestBody = `{"event":"test","delivery_id":"test-1","sent_at":"2025-03-01T12:05:00Z","title":"Bastion test notification","status":null,"status_text":null,"job_id":null,"job_name":null,"run_id":null,"run_url":null,"started_at":null,"ended_at":null,"target_type":null,"target_location":null,"error":null,"consistency_changed_total":0,"subject":"Bastion test notification","text":"Bastion test notification\n\nDestination: hook\nTime: 2025-03-01T12:05:00Z\n"}`

var goldenSpecs = []struct{ in, out string }{
	{`{"mode":"custom","wecom_bot":["t"],"email":[]}`, `{"v":1,"type":"filesystem","pipeline":{"format":"archive_v1","encryption":{"type":"none"},"webdav":{"raw_tree_direct":{"mode":"off","resume_by_size":true,"limits":null}}},"notifications":{"mode":"custom","wecom_bot":["t"],"email":[]},"retention":{"enabled":false,"keep_last":null,"keep_days":null,"max_delete_per_tick":50,"max_delete_per_day":200},"source":{"paths":["/a"],"pre_scan":true,"include":[],"exclude":[],"symlink_policy":"keep","hardlink_policy":"copy","error_policy":"fail_fast","snapshot_mode":"off","snapshot_provider":null,"consistency_policy":"warn","consistency_fail_threshold":null,"upload_on_consistency_failure":null},"target":{"type":"local_dir","base_dir":"/b","part_size_bytes":268435456}}`},
	{`{"mode":"inherit"}`, `{"v":1,"type":"filesystem","pipeline":{"format":"archive_v1","encryption":{"type":"none"},"webdav":{"raw_tree_direct":{"mode":"off","resume_by_size":true,"limits":null}}},"notifications":{"mode":"inherit","wecom_bot":[],"email":[]},"retention":{"enabled":false,"keep_last":null,"keep_days":null,"max_delete_per_tick":50,"max_delete_per_day":200},"source":{"paths":["/a"],"pre_scan":true,"include":[],"exclude":[],"symlink_policy":"keep","hardlink_policy":"copy","error_policy":"fail_fast","snapshot_mode":"off","snapshot_provider":null,"consistency_policy":"warn","consistency_fail_threshold":null,"upload_on_consistency_failure":null},"target":{"type":"local_dir","base_dir":"/b","part_size_bytes":268435456}}`},
	{`{"mode":"custom","webhook":["h"]}`, `{"v":1,"type":"filesystem","pipeline":{"format":"archive_v1","encryption":{"type":"none"},"webdav":{"raw_tree_direct":{"mode":"off","resume_by_size":true,"limits":null}}},"notifications":{"mode":"custom","wecom_bot":[],"email":[],"webhook":["h"]},"retention":{"enabled":false,"keep_last":null,"keep_days":null,"max_delete_per_tick":50,"max_delete_per_day":200},"source":{"paths":["/a"],"pre_scan":true,"include":[],"exclude":[],"symlink_policy":"keep","hardlink_policy":"copy","error_policy":"fail_fast","snapshot_mode":"off","snapshot_provider":null,"consistency_policy":"warn","consistency_fail_threshold":null,"upload_on_consistency_failure":null},"target":{"type":"local_dir","base_dir":"/b","part_size_bytes":268435456}}`},
}

func TestCompatSettingsDocument(t *testing.T) {
	t.Parallel()
	// Every part of the old document is in today's, in the same order; a channel added since
	// only adds its own parts.
	got := encodeSettings(DefaultSettings())
	jsonSubset(t, "settings", decodeAny(t, goldenSettings), decodeAny(t, got))
	for _, path := range [][]string{{"channels"}, {"templates"}, {"templates", "verify_failed"}} {
		if old, now := keyOrder(t, goldenSettings, path...), keyOrder(t, got, path...); !isSubsequence(old, now) {
			t.Errorf("%v: keys %v, were %v", path, now, old)
		}
	}
	s, err := DecodeSettings(DefaultSettings(), []byte(goldenSettings))
	if err != nil || !reflect.DeepEqual(s, DefaultSettings()) {
		t.Fatalf("stored document decodes as %+v (%v)", s, err)
	}

	// A document as the web UI saves it, in the old shape, reads back byte for byte.
	var doc map[string]any
	if err := json.Unmarshal([]byte(goldenSettings), &doc); err != nil {
		t.Fatal(err)
	}
	doc["channels"].(map[string]any)["email"] = map[string]any{"enabled": false}
	doc["templates"].(map[string]any)["wecom_markdown"] = "{{title}} <{{run_url}}>"
	doc["templates"].(map[string]any)["verify_failed"].(map[string]any)["email_body"] = "drill {{operation_id}}"
	edited, _ := json.Marshal(doc)
	s, err = DecodeSettings(DefaultSettings(), edited)
	if err != nil {
		t.Fatal(err)
	}
	if s.ChannelEnabled(ChannelEmail) || !s.ChannelEnabled(ChannelWeComBot) || s.Templates.Run["wecom_markdown"] != "{{title}} <{{run_url}}>" ||
		s.Templates.VerifyFailed["email_body"] != "drill {{operation_id}}" || s.Templates.Run["email_body"] == "" {
		t.Fatalf("edited document decodes as %+v", s)
	}
	jsonSubset(t, "edited settings", doc, decodeAny(t, encodeSettings(s)))

	// A document written before drill templates existed keeps the default drill templates; null
	// leaves a value alone, as encoding/json did for the old struct.
	s, err = DecodeSettings(DefaultSettings(), []byte(`{"enabled":false,"templates":{"email_subject":null,"wecom_markdown":"w"}}`))
	if err != nil || s.Enabled || s.Templates.Run["email_subject"] != DefaultSettings().Templates.Run["email_subject"] ||
		s.Templates.VerifyFailed["wecom_markdown"] == "" || s.Templates.Run["wecom_markdown"] != "w" {
		t.Fatalf("old document decodes as %+v (%v)", s, err)
	}
}

// A document written by a Hub with a channel this one lacks still loads (the unknown parts are
// dropped), but the API refuses to store such names.
func TestSettingsUnknownChannelsAndTemplates(t *testing.T) {
	t.Parallel()
	s, err := DecodeSettings(DefaultSettings(), []byte(`{"channels":{"no_such_channel":{"enabled":true},"email":{"enabled":false}},
		"templates":{"no_such_channel_text":"x","verify_failed":{"no_such_channel_text":"y"}}}`))
	if err != nil || s.ChannelEnabled(ChannelEmail) || len(s.Channels) != len(AllChannels) || s.Templates.Run["no_such_channel_text"] != "" {
		t.Fatalf("newer document decodes as %+v (%v)", s, err)
	}
	for _, doc := range []string{`{"channels":{"no_such_channel":{"enabled":true}}}`, `{"templates":{"no_such_channel_text":"x"}}`,
		`{"templates":{"verify_failed":{"no_such_channel_text":"x"}}}`, `{"channels":{"email":{"enabled":true,"colour":1}}}`} {
		set := DefaultSettings()
		if err := json.Unmarshal([]byte(doc), &set); err == nil {
			t.Errorf("%s: accepted", doc)
		}
	}
	set := DefaultSettings()
	err = json.Unmarshal([]byte(`{"templates":{"email_body":5}}`), &set)
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) || te.Field != "templates.email_body" {
		t.Fatalf("wrong type: %v", err)
	}
}

func goldenRun() (storage.NotificationRun, storage.Operation) {
	end := int64(1740830490)
	sum := `{"target":{"type":"webdav","run_url":"https://dav/x/"},"filesystem":{"consistency":{"changed_total":4}}}`
	errs, oerr := "source_consistency", "verify_failed: 1 of 3 files"
	run := storage.NotificationRun{Run: storage.Run{ID: "run-1", JobID: "job-1", Status: "failed", StartedAt: 1740830400,
		EndedAt: &end, SummaryJSON: &sum, Error: &errs}, JobName: "Nightly"}
	op := storage.Operation{ID: "op-1", Status: "failed", StartedAt: 1740830500, EndedAt: &end, Error: &oerr}
	return run, op
}

func TestCompatWebhookBodies(t *testing.T) {
	t.Parallel()
	run, op := goldenRun()
	now := time.Date(2025, 3, 1, 12, 5, 0, 0, time.UTC)
	tpl := DefaultSettings().Templates
	for name, tc := range map[string]struct {
		m    channel.Message
		want string
	}{
		"RunFinished": {buildMessage(storage.Notification{ID: "n-1", EventKind: storage.NotificationEventRun}, run, op, tpl,
			"https://b.example", now, nil), goldenRunBody},
		// A row queued before event kinds existed has event_kind "": a finished run.
		"LegacyRow": {buildMessage(storage.Notification{ID: "n-1"}, run, op, tpl, "https://b.example", now, nil), goldenRunBody},
		"VerifyFailed": {buildMessage(storage.Notification{ID: "n-2", EventKind: storage.NotificationEventVerifyFailed}, run, op, tpl,
			"https://b.example", now, nil), goldenDrillBody},
		"Test": {testMessage("hook", "test-1", now, nil), goldenTestBody},
	} {
		got, err := json.Marshal(webhook.NewBody(tc.m))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s body =\n%s\nwant\n%s", name, got, tc.want)
		}
	}
}

func TestCompatJobSpecNotifications(t *testing.T) {
	t.Parallel()
	for _, tc := range goldenSpecs {
		s, err := jobspec.Parse([]byte(`{"v":1,"type":"filesystem","source":{"paths":["/a"]},"target":{"type":"local_dir","base_dir":"/b"},"notifications":` + tc.in + `}`))
		if err != nil {
			t.Fatal(err)
		}
		if f, msg := ValidateJobNotifications(s.Notifications); f != "" {
			t.Errorf("%s: %s", tc.in, msg)
		}
		out, err := json.Marshal(s)
		if err != nil || string(out) != tc.out {
			t.Errorf("%s marshals as\n%s\nwant\n%s", tc.in, out, tc.out)
		}
	}
	s, err := jobspec.Parse([]byte(`{"v":1,"type":"filesystem","source":{"paths":["/a"]},"target":{"type":"local_dir","base_dir":"/b"},"notifications":{"mode":"custom","no_such_channel":["p"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := ValidateJobNotifications(s.Notifications); f != "spec.notifications.no_such_channel" {
		t.Fatalf("unknown channel list: field %q", f)
	}
}

// Rows queued by the version before channel drivers (same columns, channel names as stored then,
// one left 'sending' by a crash) are delivered through the drivers: WeCom and a webhook on
// loopback servers, email through a real SMTP server.
func TestCompatQueuedRowsAreDelivered(t *testing.T) {
	t.Parallel()
	addr, api := testtool.StartMailpit(t)
	b := setup(t)
	hook := newHook(t, ok204)
	wecom := newHook(t, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`) })
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	b.secrets.put(t, secrets.KindSMTP, "ops", secrets.SMTP{Host: host, Port: p, From: "bastion@example.test",
		To: []string{"a@example.test"}, TLS: "none"})
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: hook.srv.URL})
	b.secrets.put(t, secrets.KindWeComBot, "team", secrets.WeComBot{WebhookURL: wecom.srv.URL + "/send?key=k"})
	ended := t0.Unix()
	if err := b.db.Writer().InsertRun(b.ctx, storage.Run{ID: "run-1", JobID: "job-1", Status: storage.RunFailed,
		StartedAt: ended - 60, EndedAt: &ended}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Writer().Exec(b.ctx, `INSERT INTO notifications(id, run_id, channel, secret_name, status, attempts,
			next_attempt_at, lease_until, created_at, updated_at, event_kind, operation_id) VALUES
		('n-email', 'run-1', 'email', 'ops', 'queued', 2, ?, NULL, ?, ?, 'run', ''),
		('n-hook', 'run-1', 'webhook', 'hook', 'sending', 0, ?, ?, ?, ?, 'run', ''),
		('n-wecom', 'run-1', 'wecom_bot', 'team', 'queued', 0, ?, NULL, ?, ?, 'run', '')`,
		ended, ended, ended, ended, ended+300, ended, ended, ended, ended, ended); err != nil {
		t.Fatal(err)
	}
	b.start(t)
	for _, d := range []struct{ channel, name string }{{ChannelEmail, "ops"}, {ChannelWebhook, "hook"}, {ChannelWeComBot, "team"}} {
		b.waitRow(t, "run-1", d.channel, d.name, "sent", status(storage.NotificationSent))
	}
	if msgs := testtool.MailpitMessages(t, api); len(msgs) != 1 || msgs[0].Subject != "Bastion Failed - Nightly" {
		t.Fatalf("mail = %+v", msgs)
	}
	req := <-hook.got
	if req.header.Get(send.HeaderDelivery) != "n-hook" || req.header.Get(send.HeaderEvent) != WebhookEventRunFinished {
		t.Fatalf("webhook headers %v", req.header)
	}
	if req := <-wecom.got; !strings.Contains(string(req.body), "Bastion backup failed") {
		t.Fatalf("wecom body %s", req.body)
	}
}

func decodeAny(t *testing.T, doc string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// jsonSubset fails unless every member of want is in got with the same value.
func jsonSubset(t *testing.T, path string, want, got any) {
	t.Helper()
	wm, ok := want.(map[string]any)
	if !ok {
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
		return
	}
	gm, ok := got.(map[string]any)
	if !ok {
		t.Errorf("%s = %v, want an object", path, got)
		return
	}
	for k, v := range wm {
		jsonSubset(t, path+"."+k, v, gm[k])
	}
}

// keyOrder lists the member names of the object at path in document order.
func keyOrder(t *testing.T, doc string, path ...string) []string {
	t.Helper()
	raw := json.RawMessage(doc)
	for _, p := range path {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		raw = m[p]
	}
	keys, _, err := decodeObject(raw)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func isSubsequence(sub, seq []string) bool {
	i := 0
	for _, s := range seq {
		if i < len(sub) && sub[i] == s {
			i++
		}
	}
	return i == len(sub)
}

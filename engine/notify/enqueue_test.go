package notify

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/storage"
)

func destinations(rows []storage.Notification) string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Channel+"/"+r.SecretName)
	}
	return fmt.Sprint(out)
}

func addAllKinds(t *testing.T, b *bundle) {
	t.Helper()
	b.secrets.put(t, secrets.KindWeComBot, "team", secrets.WeComBot{WebhookURL: "https://wecom.example/send?key=k1"})
	b.secrets.put(t, secrets.KindWeComBot, "other", secrets.WeComBot{WebhookURL: "https://wecom.example/send?key=k2"})
	b.secrets.put(t, secrets.KindSMTP, "ops", secrets.SMTP{Host: "mail.example", Port: 25, From: "b@example.test",
		To: []string{"o@example.test"}, TLS: "none"})
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: "https://hooks.example/in"})
	b.secrets.put(t, secrets.KindWebDAV, "nas", secrets.WebDAV{Username: "u", Password: "p"})
	if _, err := b.svc.SetDestinationEnabled(b.ctx, ChannelWeComBot, "other", false); err != nil {
		t.Fatal(err)
	}
}

func TestEnqueueSelectsDestinations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	addAllKinds(t, b)

	if n := b.finishRun(t, "inherit", storage.RunSuccess, JobNotifications{}); n != 3 {
		t.Fatalf("inherit queued %d, want 3", n)
	}
	if got := destinations(b.rows(t, "inherit")); got != "[email/ops webhook/hook wecom_bot/team]" {
		t.Fatalf("inherit rows = %s (a disabled destination and a webdav secret must not be used)", got)
	}
	for _, r := range b.rows(t, "inherit") {
		if r.Status != storage.NotificationQueued || r.NextAttemptAt != t0.Unix() || r.Attempts != 0 {
			t.Fatalf("row = %+v, want queued and due now", r)
		}
	}

	n := b.finishRun(t, "custom", storage.RunFailed, JobNotifications{Mode: ModeCustom,
		Destinations: map[string][]string{"wecom_bot": {"other", "team", "missing"}, "webhook": {"hook"}}})
	if got := destinations(b.rows(t, "custom")); n != 2 || got != "[webhook/hook wecom_bot/team]" {
		t.Fatalf("custom queued %d: %s; want only the named, enabled, existing destinations", n, got)
	}

	if n := b.finishRun(t, "rejected", storage.RunRejected, JobNotifications{Mode: ModeInherit}); n != 3 {
		t.Fatalf("rejected run queued %d, want 3: the templates promise rejected-run reports", n)
	}
	if n := b.finishRun(t, "canceled", storage.RunCanceled, JobNotifications{}); n != 0 {
		t.Fatalf("canceled run queued %d, want 0", n)
	}
	if n := b.finishRun(t, "odd-mode", storage.RunSuccess, JobNotifications{Mode: "sometimes"}); n != 3 {
		t.Fatalf("unknown mode queued %d, want inherit's 3", n)
	}

	// A repeat (an agent run seen ending twice) inserts nothing.
	if err := b.db.Write(b.ctx, func(q storage.Q) error {
		n, err := b.svc.EnqueueForRun(b.ctx, q, RunInfo{ID: "inherit", Status: storage.RunSuccess}, JobNotifications{})
		if n != 0 {
			return fmt.Errorf("repeat enqueue inserted %d", n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(b.rows(t, "inherit")) != 3 {
		t.Fatal("repeat enqueue changed the rows")
	}
}

func TestEnqueueHonoursSwitches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	addAllKinds(t, b)
	set := DefaultSettings()
	set.Channels[ChannelEmail] = ChannelSettings{Enabled: false}
	if _, err := b.svc.UpdateSettings(b.ctx, set); err != nil {
		t.Fatal(err)
	}
	b.finishRun(t, "no-email", storage.RunSuccess, JobNotifications{})
	if got := destinations(b.rows(t, "no-email")); got != "[webhook/hook wecom_bot/team]" {
		t.Fatalf("rows with email off = %s", got)
	}
	set.Enabled = false
	if _, err := b.svc.UpdateSettings(b.ctx, set); err != nil {
		t.Fatal(err)
	}
	if n := b.finishRun(t, "all-off", storage.RunFailed, JobNotifications{}); n != 0 {
		t.Fatalf("queued %d with notifications off", n)
	}
}

func TestEnqueueCommitsWithTheRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	addAllKinds(t, b)
	boom := errors.New("final write failed")
	err := b.db.Write(b.ctx, func(q storage.Q) error {
		if err := q.InsertRun(b.ctx, storage.Run{ID: "r", JobID: "job-1", Status: storage.RunSuccess, StartedAt: 1}); err != nil {
			return err
		}
		if n, err := b.svc.EnqueueForRun(b.ctx, q, RunInfo{ID: "r", Status: storage.RunSuccess}, JobNotifications{}); err != nil || n != 3 {
			return fmt.Errorf("enqueue: %d %w", n, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if rows := b.rows(t, "r"); len(rows) != 0 {
		t.Fatalf("notifications of a rolled-back run survived: %v", rows)
	}
}

func TestEnqueueFinishedReadsTheJobSpec(t *testing.T) {
	t.Parallel()
	b := setup(t)
	addAllKinds(t, b)
	for _, tc := range []struct {
		run, status, spec, want string
	}{
		{"custom-v1", storage.RunFailed, `{"v":1,"type":"filesystem","source":{"paths":["/data"]},"target":{"type":"local_dir","base_dir":"/b"},"notifications":{"mode":"custom","webhook":["hook"],"email":["ops"]}}`,
			"[email/ops webhook/hook]"},
		{"inherit-v1", storage.RunSuccess, `{"v":1,"type":"filesystem","source":{"paths":["/data"]},"target":{"type":"local_dir","base_dir":"/b"},"notifications":{"mode":"inherit"}}`,
			"[email/ops webhook/hook wecom_bot/team]"},
		{"broken", storage.RunRejected, `{"type":`, "[email/ops webhook/hook wecom_bot/team]"},
		{"canceled", storage.RunCanceled, `{}`, "[]"},
	} {
		run := storage.Run{ID: tc.run, JobID: "job-1", Status: tc.status, StartedAt: 1}
		if err := b.db.Write(b.ctx, func(q storage.Q) error {
			if err := q.InsertRun(b.ctx, run); err != nil {
				return err
			}
			_, err := b.svc.EnqueueFinished(b.ctx, q, run, tc.spec)
			return err
		}); err != nil {
			t.Fatalf("%s: %v", tc.run, err)
		}
		if got := destinations(b.rows(t, tc.run)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.run, got, tc.want)
		}
	}
}

// TestUnreadableSettingsDoNotHoldRunsBack: a settings row that does not decode cannot get better
// by retrying, so the finish hook must not fail (that would roll back every run's final write):
// the run ends, nothing is queued, and the problem is logged, once a minute at most.
func TestUnreadableSettingsDoNotHoldRunsBack(t *testing.T) {
	t.Parallel()
	var logged atomic.Int32 // error lines about the settings
	b := setup(t, func(o *Options) {
		o.Logger = zerolog.New(io.Discard).Hook(zerolog.HookFunc(func(_ *zerolog.Event, l zerolog.Level, msg string) {
			if l == zerolog.ErrorLevel && strings.HasPrefix(msg, "notification settings are unreadable") {
				logged.Add(1)
			}
		}))
	})
	addAllKinds(t, b)
	if err := b.db.Writer().PutSetting(b.ctx, storage.SettingNotifications, `{"enabled":tru`, 1); err != nil {
		t.Fatal(err)
	}
	for i, step := range []struct {
		advance time.Duration
		logged  int
	}{{0, 1}, {time.Second, 1}, {time.Minute, 2}} {
		b.clock.Advance(step.advance)
		id := fmt.Sprintf("run-%d", i)
		run := storage.Run{ID: id, JobID: "job-1", Status: storage.RunFailed, StartedAt: 1}
		var n int
		if err := b.db.Write(b.ctx, func(q storage.Q) error {
			if err := q.InsertRun(b.ctx, run); err != nil {
				return err
			}
			var err error
			n, err = b.svc.EnqueueFinished(b.ctx, q, run, `{}`)
			return err
		}); err != nil {
			t.Fatalf("%s: the finish hook failed: %v", id, err)
		}
		if _, err := b.db.Reader().GetRun(b.ctx, id); err != nil || n != 0 || len(b.rows(t, id)) != 0 {
			t.Fatalf("%s: run stored = %v, queued %d %v; want the run kept and nothing queued", id, err, n, b.rows(t, id))
		}
		if got := int(logged.Load()); got != step.logged {
			t.Fatalf("%s: unreadable settings logged %d times, want %d", id, got, step.logged)
		}
	}
}

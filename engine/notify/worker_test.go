package notify

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/notify/send"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/storage"
)

func only(webhooks ...string) JobNotifications {
	return JobNotifications{Mode: ModeCustom, Destinations: map[string][]string{"webhook": webhooks}}
}

func TestWorkerDeliversWebhookWithSignatureAndEvent(t *testing.T) {
	t.Parallel()
	published := make(chan storage.RunEvent, 4)
	b := setup(t, func(o *Options) {
		o.Publish = func(evs ...storage.RunEvent) {
			for _, e := range evs {
				published <- e
			}
		}
	})
	h := newHook(t, ok204)
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: h.srv.URL + "/in", Secret: "signing-key"})
	b.start(t)
	b.finishRun(t, "run-1", storage.RunFailed, only("hook"), func(r *storage.Run) {
		r.Error = ptr("source_consistency")
		r.SummaryJSON = ptr(`{"target":{"type":"webdav","run_url":"https://dav/x/"},"filesystem":{"consistency":{"changed_total":2}}}`)
	})
	n := b.waitRow(t, "run-1", ChannelWebhook, "hook", "sent", status(storage.NotificationSent))
	if n.Attempts != 1 || n.SentAt == nil || *n.SentAt != t0.Unix() || n.LastError != nil || n.LeaseUntil != nil {
		t.Fatalf("sent row = %+v", n)
	}

	req := <-h.got
	if req.header.Get(send.HeaderDelivery) != n.ID || req.header.Get(send.HeaderEvent) != WebhookEventRunFinished {
		t.Fatalf("headers = %v, want delivery id %s", req.header, n.ID)
	}
	if req.header.Get(send.HeaderSignature) != send.Signature("signing-key", req.body) {
		t.Fatal("signature does not match the body")
	}
	var body map[string]any
	if err := json.Unmarshal(req.body, &body); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"event": "run_finished", "delivery_id": n.ID, "status": "failed", "status_text": "Failed",
		"title": "Bastion backup failed", "job_id": "job-1", "job_name": "Nightly", "run_id": "run-1",
		"run_url": "https://backup.example.test/runs/run-1", "started_at": "2025-03-01T11:59:00Z",
		"ended_at": "2025-03-01T12:00:00Z", "target_type": "webdav", "target_location": "https://dav/x/",
		"error": "source_consistency", "consistency_changed_total": 2.0, "subject": "Bastion Failed - Nightly",
		"sent_at": "2025-03-01T12:00:00Z",
	} {
		if body[k] != want {
			t.Errorf("body[%s] = %v, want %v", k, body[k], want)
		}
	}
	if !strings.Contains(body["text"].(string), "Failed by policy: source changed during backup: 2\n") {
		t.Errorf("text = %q", body["text"])
	}

	evs := b.events(t, "run-1")
	if len(evs) != 1 || evs[0].Kind != EventNotifySent || evs[0].Level != "info" {
		t.Fatalf("events = %+v, want one notify_sent", evs)
	}
	if f := eventFields(t, evs[0]); f["channel"] != "webhook" || f["secret_name"] != "hook" || f["attempts"] != 1.0 {
		t.Fatalf("notify_sent fields = %v", f)
	}
	if p := <-published; p.Kind != EventNotifySent || p.Seq != evs[0].Seq || p.RunID != "run-1" {
		t.Fatalf("published %+v, want the committed notify_sent", p)
	}
}

func TestWorkerRetriesWithBackoffThenFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := newHook(t, fail500)
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: h.srv.URL})
	b.start(t)
	b.finishRun(t, "run-1", storage.RunSuccess, only("hook"))
	for a := 1; a <= MaxAttempts; a++ {
		n := b.waitRow(t, "run-1", ChannelWebhook, "hook", "attempt failed", func(n storage.Notification) bool {
			return n.Attempts == a && n.Status != storage.NotificationSending
		})
		if n.LastError == nil || *n.LastError != "webhook http 500: receiver exploded" || *n.LastErrorKind != "unknown" {
			t.Fatalf("attempt %d: last error %v kind %v", a, n.LastError, n.LastErrorKind)
		}
		if a == MaxAttempts {
			if n.Status != storage.NotificationFailed {
				t.Fatalf("after %d attempts status = %s, want failed", a, n.Status)
			}
			break
		}
		due := b.clock.Now().Add(Backoff(a))
		if n.Status != storage.NotificationQueued || n.NextAttemptAt != due.Unix() {
			t.Fatalf("attempt %d: %s due %d, want queued due %d", a, n.Status, n.NextAttemptAt, due.Unix())
		}
		// The worker sleeps until the retry is due (in steps of at most maxSleep); nothing is
		// sent before.
		b.advanceTo(t, due.Add(-time.Second))
		if h.count() != a {
			t.Fatalf("receiver saw %d requests after %d attempts", h.count(), a)
		}
		b.advanceTo(t, due)
	}
	if h.count() != MaxAttempts {
		t.Fatalf("receiver saw %d requests, want %d", h.count(), MaxAttempts)
	}
	evs := b.events(t, "run-1")
	if len(evs) != MaxAttempts {
		t.Fatalf("%d events, want %d notify_failed", len(evs), MaxAttempts)
	}
	for i, e := range evs {
		f := eventFields(t, e)
		env := f["error_envelope"].(map[string]any)
		last := i == MaxAttempts-1
		if e.Kind != EventNotifyFailed || f["attempts"] != float64(i+1) || f["error_kind"] != "unknown" ||
			f["error"] != "webhook http 500: receiver exploded" || env["retriable"] != !last ||
			(last && e.Level != "error") || (!last && e.Level != "warn") {
			t.Fatalf("event %d = %s %s %v", i, e.Kind, e.Level, f)
		}
	}
	// Failed and nothing queued: the worker sleeps until woken.
	waitUntil(t, "worker idle", func() bool { return b.clock.Armed() == 0 })
}

func TestWorkerHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := newHook(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "600")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: h.srv.URL})
	b.start(t)
	b.finishRun(t, "run-1", storage.RunSuccess, only("hook"))
	n := b.waitRow(t, "run-1", ChannelWebhook, "hook", "rate limited", func(n storage.Notification) bool { return n.Attempts == 1 })
	if n.Status != storage.NotificationQueued || n.NextAttemptAt != t0.Unix()+600 || *n.LastErrorKind != "rate_limited" {
		t.Fatalf("row = %+v (kind %v), want queued 600 s out, rate_limited", n, *n.LastErrorKind)
	}
	if f := eventFields(t, b.events(t, "run-1")[0]); f["retry_after_seconds"] != 600.0 || f["error_kind"] != "rate_limited" {
		t.Fatalf("event fields = %v", f)
	}
	h.set(ok204)
	b.advanceTo(t, t0.Add(600*time.Second))
	b.waitRow(t, "run-1", ChannelWebhook, "hook", "sent", status(storage.NotificationSent))
}

func TestIdleWorkerSleepsUntilWoken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := newHook(t, ok204)
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: h.srv.URL})
	b.start(t)
	if r, _ := b.waitSettled(t, 0, 0); r.armed {
		t.Fatal("worker armed a timer with an empty queue")
	}
	b.clock.Advance(24 * time.Hour)
	if b.clock.Fires() != 0 || b.svc.wakeups() != 0 {
		t.Fatalf("idle worker woke: %d timer fires, %d loops", b.clock.Fires(), b.svc.wakeups())
	}
	// An enqueue wakes it at once: no clock movement needed.
	b.finishRun(t, "run-1", storage.RunSuccess, only("hook"))
	b.waitRow(t, "run-1", ChannelWebhook, "hook", "sent", status(storage.NotificationSent))
}

func TestRowLeftSendingByACrashIsDeliveredAfterStart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := newHook(t, ok204)
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: h.srv.URL})
	b.finishRun(t, "run-1", storage.RunSuccess, only("hook"))
	// A previous process claimed the row and died: its lease is far in the future.
	claimed, err := b.db.Writer().ClaimNotification(b.ctx, t0.Unix(), t0.Add(time.Hour).Unix(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.start(t)
	n := b.waitRow(t, "run-1", ChannelWebhook, "hook", "sent", status(storage.NotificationSent))
	if req := <-h.got; req.header.Get(send.HeaderDelivery) != claimed.ID || n.Attempts != 1 {
		t.Fatalf("delivery id %q attempts %d, want %s and 1", req.header.Get(send.HeaderDelivery), n.Attempts, claimed.ID)
	}
}

func TestLeaseExpiredWhileRunningIsRecovered(t *testing.T) {
	t.Parallel()
	gated := newGated()
	b := setup(t, func(o *Options) { o.Lease = time.Minute; o.Channels = gated.list() })
	h := newHook(t, ok204)
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: h.srv.URL})
	release := gated.gate(h.srv.URL)
	b.start(t)
	b.finishRun(t, "run-1", storage.RunSuccess, only("hook"))
	<-gated.entered // the attempt is stuck in flight

	// The worker wakes when the lease expires and re-queues the row; it does not start a second
	// delivery to the destination while the stuck one is in flight.
	b.waitArmedAt(t, t0.Add(61*time.Second), 1)
	b.clock.Advance(61 * time.Second)
	b.waitRow(t, "run-1", ChannelWebhook, "hook", "re-queued", status(storage.NotificationQueued))

	// The stuck attempt finishes; its claim is gone, so it records nothing. The row is then
	// delivered again with the same idempotency key.
	release <- nil
	n := b.waitRow(t, "run-1", ChannelWebhook, "hook", "sent", status(storage.NotificationSent))
	first, second := <-h.got, <-h.got
	if first.header.Get(send.HeaderDelivery) != n.ID || second.header.Get(send.HeaderDelivery) != n.ID {
		t.Fatal("the repeat delivery does not carry the same idempotency key")
	}
	if n.Attempts != 1 || len(b.events(t, "run-1")) != 1 {
		t.Fatalf("attempts %d, %d events; want the lost attempt unrecorded", n.Attempts, len(b.events(t, "run-1")))
	}
}

func TestSendTimeRecheckCancels(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := newHook(t, ok204)
	for _, name := range []string{"disabled", "deleted", "fine"} {
		b.secrets.put(t, secrets.KindWebhook, name, secrets.Webhook{URL: h.srv.URL + "/" + name})
	}
	b.finishRun(t, "run-1", storage.RunSuccess, only("disabled", "deleted", "fine"))
	// Change state behind the queue's back, as a concurrent API call racing the claim would.
	if _, err := b.db.Writer().Exec(b.ctx, `INSERT INTO notification_destinations VALUES ('hub','webhook','disabled',0,1,1)`); err != nil {
		t.Fatal(err)
	}
	b.secrets.mu.Lock()
	delete(b.secrets.m, "hub/webhook/deleted")
	b.secrets.mu.Unlock()
	b.start(t)
	for name, reason := range map[string]string{"disabled": ReasonDestinationDisabled, "deleted": ReasonDestinationDeleted} {
		n := b.waitRow(t, "run-1", ChannelWebhook, name, "canceled", status(storage.NotificationCanceled))
		if *n.LastError != reason || n.Attempts != 0 {
			t.Errorf("%s: %q after %d attempts, want %q", name, *n.LastError, n.Attempts, reason)
		}
	}
	b.waitRow(t, "run-1", ChannelWebhook, "fine", "sent", status(storage.NotificationSent))
	if h.count() != 1 {
		t.Fatalf("receiver saw %d requests, want only the enabled destination's", h.count())
	}

	// Switches flipped after the claim: the global switch, then the channel's.
	for _, tc := range []struct {
		run, reason string
		set         func(*Settings)
	}{
		{"run-2", ReasonNotificationsDisabled, func(s *Settings) { s.Enabled = false }},
		{"run-3", ReasonChannelDisabled, func(s *Settings) { s.Channels[ChannelWebhook] = ChannelSettings{Enabled: false} }},
	} {
		b.stop()
		if err := b.db.Writer().PutSetting(b.ctx, storage.SettingNotifications, encodeSettings(DefaultSettings()), 1); err != nil {
			t.Fatal(err)
		}
		b.finishRun(t, tc.run, storage.RunSuccess, only("fine"))
		s := DefaultSettings()
		tc.set(&s)
		if err := b.db.Writer().PutSetting(b.ctx, storage.SettingNotifications, encodeSettings(s), 1); err != nil {
			t.Fatal(err)
		}
		b.start(t)
		if n := b.waitRow(t, tc.run, ChannelWebhook, "fine", "canceled", status(storage.NotificationCanceled)); *n.LastError != tc.reason {
			t.Errorf("%s: %q, want %q", tc.run, *n.LastError, tc.reason)
		}
	}
}

func TestDestinationDeletedWhileSending(t *testing.T) {
	t.Parallel()
	gated := newGated()
	b := setup(t, func(o *Options) { o.Channels = gated.list() })
	h := newHook(t, ok204)
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: h.srv.URL})
	release := gated.gate(h.srv.URL)
	b.start(t)
	b.finishRun(t, "run-1", storage.RunSuccess, only("hook"))
	<-gated.entered

	// The secrets API deletes the destination while the attempt is in flight.
	if err := b.db.Write(b.ctx, func(q storage.Q) error {
		if _, err := b.svc.DestinationDeleted(b.ctx, q, secrets.KindWebhook, "hook"); err != nil {
			return err
		}
		_, err := q.Exec(b.ctx, `DELETE FROM secrets WHERE kind = 'webhook' AND name = 'hook'`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	b.secrets.mu.Lock()
	delete(b.secrets.m, "hub/webhook/hook")
	b.secrets.mu.Unlock()

	release <- errors.New("connection reset by peer")
	n := b.waitRow(t, "run-1", ChannelWebhook, "hook", "canceled", status(storage.NotificationCanceled))
	if *n.LastError != ReasonDestinationDeleted || n.Attempts != 1 {
		t.Fatalf("row = %q after %d attempts", *n.LastError, n.Attempts)
	}
	evs := b.events(t, "run-1")
	if len(evs) != 1 || evs[0].Kind != EventNotifyFailed || eventFields(t, evs[0])["canceled"] != ReasonDestinationDeleted {
		t.Fatalf("events = %+v", evs)
	}
	page, err := b.svc.Queue(b.ctx, QueueQuery{})
	if err != nil || len(page.Items) != 1 || !page.Items[0].DestinationDeleted || page.Items[0].DestinationEnabled {
		t.Fatalf("queue = %+v %v, want the row flagged destination_deleted", page.Items, err)
	}
}

// TestSlowDestinationDoesNotDelayOthers: a receiver that hangs holds one delivery slot, never the
// queue. Another destination's later notification is delivered while the first still hangs, and
// the hanging destination never gets a second request in parallel.
func TestSlowDestinationDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var (
		mu                sync.Mutex
		inFlight, maxSeen int
	)
	unblock := make(chan struct{})
	first := true
	slow := newHook(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		maxSeen = max(maxSeen, inFlight)
		hang := first
		first = false
		mu.Unlock()
		if hang {
			select {
			case <-unblock:
			case <-r.Context().Done():
			}
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	fast := newHook(t, ok204)
	b.secrets.put(t, secrets.KindWebhook, "slow", secrets.Webhook{URL: slow.srv.URL})
	b.secrets.put(t, secrets.KindWebhook, "fast", secrets.Webhook{URL: fast.srv.URL})
	b.finishRun(t, "run-1", storage.RunSuccess, only("slow"))
	b.clock.Advance(time.Second) // run-2 and run-3 are queued later than run-1
	b.finishRun(t, "run-2", storage.RunSuccess, only("slow"))
	b.finishRun(t, "run-3", storage.RunSuccess, only("fast"))
	b.start(t)

	<-slow.got // run-1 is hanging at the slow receiver
	b.waitRow(t, "run-3", ChannelWebhook, "fast", "fast destination delivered", status(storage.NotificationSent))
	if n := b.row(t, "run-1", ChannelWebhook, "slow"); n.Status != storage.NotificationSending {
		t.Fatalf("slow row is %s, want still sending while the fast one was delivered", n.Status)
	}
	if n := b.row(t, "run-2", ChannelWebhook, "slow"); n.Status != storage.NotificationQueued || slow.count() != 1 {
		t.Fatalf("second slow row is %s with %d requests, want queued behind the first", n.Status, slow.count())
	}
	close(unblock)
	b.waitRow(t, "run-2", ChannelWebhook, "slow", "slow destination drained", status(storage.NotificationSent))
	mu.Lock()
	defer mu.Unlock()
	if maxSeen != 1 {
		t.Fatalf("slow receiver had %d requests in flight at once, want 1", maxSeen)
	}
}

func TestPerDestinationRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *Options) { o.RateEvery = 10 * time.Second; o.RateBurst = 2 })
	h := newHook(t, ok204)
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: h.srv.URL})
	for _, r := range []string{"run-1", "run-2", "run-3"} {
		b.finishRun(t, r, storage.RunSuccess, only("hook"))
	}
	b.start(t)
	b.waitRow(t, "run-2", ChannelWebhook, "hook", "burst delivered", status(storage.NotificationSent))
	b.waitRow(t, "run-1", ChannelWebhook, "hook", "burst delivered", status(storage.NotificationSent))
	// The burst is spent: the third waits for a token, and the worker sleeps until then.
	b.waitArmedAt(t, t0.Add(10*time.Second), 0)
	if n := b.row(t, "run-3", ChannelWebhook, "hook"); n.Status != storage.NotificationQueued || h.count() != 2 {
		t.Fatalf("third row %s after %d requests, want queued after 2", n.Status, h.count())
	}
	b.clock.Advance(10 * time.Second)
	b.waitRow(t, "run-3", ChannelWebhook, "hook", "third delivered", status(storage.NotificationSent))
}

func TestShutdownReleasesTheAttemptInFlight(t *testing.T) {
	t.Parallel()
	gated := newGated()
	b := setup(t, func(o *Options) { o.Channels = gated.list() })
	h := newHook(t, ok204)
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: h.srv.URL})
	gated.gate(h.srv.URL)
	b.start(t)
	b.finishRun(t, "run-1", storage.RunSuccess, only("hook"))
	<-gated.entered
	b.stop()
	n := b.row(t, "run-1", ChannelWebhook, "hook")
	if n.Status != storage.NotificationQueued || n.Attempts != 0 || n.LeaseUntil != nil || len(b.events(t, "run-1")) != 0 {
		t.Fatalf("row after shutdown = %+v, want queued with the attempt uncounted", n)
	}
}

func TestWorkerDeliversWeComMarkdown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := newHook(t, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`) })
	b.secrets.put(t, secrets.KindWeComBot, "team", secrets.WeComBot{WebhookURL: h.srv.URL + "/cgi-bin/webhook/send?key=k-123456"})
	b.start(t)
	b.finishRun(t, "run-1", storage.RunRejected, JobNotifications{}, func(r *storage.Run) { r.Error = ptr("overlap_rejected") })
	n := b.waitRow(t, "run-1", ChannelWeComBot, "team", "sent", status(storage.NotificationSent))
	var msg struct {
		Markdown struct{ Content string } `json:"markdown"`
	}
	req := <-h.got
	if err := json.Unmarshal(req.body, &msg); err != nil {
		t.Fatal(err)
	}
	want := "**Bastion backup rejected**\n> Job: Nightly\n> Run: run-1\n> Started: 2025-03-01T11:59:00Z\n" +
		"> Ended: 2025-03-01T12:00:00Z\n> Error: overlap_rejected (another run of this job was still queued or running)\n"
	if msg.Markdown.Content != want || req.header.Get(send.HeaderDelivery) != n.ID {
		t.Fatalf("content =\n%s\nwant\n%s", msg.Markdown.Content, want)
	}
}

func TestWeComErrorCodeIsRetriedAndRedacted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := newHook(t, func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"errcode":93000,"errmsg":"invalid webhook url"}`)
	})
	b.secrets.put(t, secrets.KindWeComBot, "team", secrets.WeComBot{WebhookURL: h.srv.URL + "/send?key=very-secret-key"})
	b.start(t)
	b.finishRun(t, "run-1", storage.RunSuccess, JobNotifications{})
	n := b.waitRow(t, "run-1", ChannelWeComBot, "team", "failed once", func(n storage.Notification) bool { return n.Attempts == 1 })
	if *n.LastError != "wecom webhook error 93000: invalid webhook url" || *n.LastErrorKind != "auth" {
		t.Fatalf("last error %q kind %q", *n.LastError, *n.LastErrorKind)
	}
	if f := *b.events(t, "run-1")[0].FieldsJSON; strings.Contains(f, "very-secret-key") {
		t.Fatalf("event leaks the key: %s", f)
	}
}

// Time that passes while the worker works (slow I/O; here a test moving the clock mid-tick) must
// shorten its sleep, not push the wake-up past the deadline the tick computed.
func TestTimePassingDuringATickDoesNotDelayTheWakeUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := newHook(t, ok204)
	b.secrets.put(t, secrets.KindWebhook, "hook", secrets.Webhook{URL: h.srv.URL})
	b.finishRun(t, "run-1", storage.RunSuccess, only("hook"))
	due := t0.Add(time.Minute)
	if _, err := b.db.Writer().Exec(b.ctx, `UPDATE notifications SET next_attempt_at = ?`, due.Unix()); err != nil {
		t.Fatal(err)
	}
	select { // the enqueue's wake-up: without it the first tick is the only one before the test looks
	case <-b.svc.wake:
	default:
	}
	var once sync.Once
	b.svc.hookTick = func() { once.Do(func() { b.clock.Advance(30 * time.Second) }) }
	b.start(t)
	b.waitArmedAt(t, due, 0)
	if d, ok := b.clock.NextDeadline(); !ok || !d.Equal(due) {
		t.Fatalf("timer armed for %v (%v), want the computed deadline %v", d, ok, due)
	}
	b.clock.Set(due)
	b.waitRow(t, "run-1", ChannelWebhook, "hook", "sent", status(storage.NotificationSent))
}

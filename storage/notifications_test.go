package storage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

type notifBundle struct {
	db  *storage.DB
	ctx context.Context
}

func setupNotif(t *testing.T) *notifBundle {
	t.Helper()
	b := &notifBundle{db: storagetest.Open(t), ctx: context.Background()}
	b.write(t, func(q storage.Q) error {
		if err := q.InsertJob(b.ctx, storage.Job{ID: "j1", Name: "Nightly", ScheduleTimezone: "UTC",
			OverlapPolicy: "queue", MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1}); err != nil {
			return err
		}
		for _, id := range []string{"r1", "r2", "r3"} {
			if err := q.InsertRun(b.ctx, storage.Run{ID: id, JobID: "j1", Status: storage.RunSuccess, StartedAt: 1}); err != nil {
				return err
			}
		}
		return nil
	})
	return b
}

func (b *notifBundle) write(t *testing.T, fn func(q storage.Q) error) {
	t.Helper()
	if err := b.db.Write(b.ctx, fn); err != nil {
		t.Fatal(err)
	}
}

func (b *notifBundle) addSecret(t *testing.T, kind, name string) {
	t.Helper()
	if _, err := b.db.Writer().Exec(b.ctx, `INSERT INTO secrets(id, node_id, kind, name, kid, nonce, ciphertext, created_at, updated_at)
		VALUES (?, 'hub', ?, ?, 1, x'00', x'00', 5, 5)`, kind+"/"+name, kind, name); err != nil {
		t.Fatal(err)
	}
}

func (b *notifBundle) insert(t *testing.T, id, run, channel, dest string, due, created int64) {
	t.Helper()
	ok, err := b.db.Writer().InsertNotification(b.ctx, storage.Notification{ID: id, RunID: run, Channel: channel,
		SecretName: dest, Status: storage.NotificationQueued, NextAttemptAt: due, CreatedAt: created, UpdatedAt: created})
	if err != nil || !ok {
		t.Fatalf("insert %s: inserted=%t err=%v", id, ok, err)
	}
}

func (b *notifBundle) get(t *testing.T, id string) storage.Notification {
	t.Helper()
	n, err := b.db.Reader().GetNotification(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestInsertNotificationIsIdempotentPerRunAndDestination(t *testing.T) {
	t.Parallel()
	b := setupNotif(t)
	b.insert(t, "n1", "r1", "email", "ops", 10, 10)
	ok, err := b.db.Writer().InsertNotification(b.ctx, storage.Notification{ID: "n2", RunID: "r1", Channel: "email",
		SecretName: "ops", Status: storage.NotificationQueued, NextAttemptAt: 10, CreatedAt: 10, UpdatedAt: 10})
	if err != nil || ok {
		t.Fatalf("repeat insert: inserted=%t err=%v, want false, nil", ok, err)
	}
	if _, err := b.db.Reader().GetNotification(b.ctx, "n2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("repeat row exists: %v", err)
	}
	b.insert(t, "n3", "r1", "wecom_bot", "ops", 10, 10) // same name, other channel: a different destination
}

func TestClaimTakesOldestDueRowOutsideExcludedDestinations(t *testing.T) {
	t.Parallel()
	b := setupNotif(t)
	b.insert(t, "late", "r1", "email", "a", 50, 1)
	b.insert(t, "first", "r2", "email", "a", 10, 2)
	b.insert(t, "second", "r3", "wecom_bot", "b", 20, 3)

	q := b.db.Writer()
	if _, err := q.ClaimNotification(b.ctx, 5, 100, nil); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("claim before anything is due: %v, want ErrNotFound", err)
	}
	n, err := q.ClaimNotification(b.ctx, 30, 130, []string{"wecom_bot/b"})
	if err != nil || n.ID != "first" || n.Status != storage.NotificationSending || *n.LeaseUntil != 130 {
		t.Fatalf("claim = %+v, %v; want first, sending, lease 130", n, err)
	}
	// email/a is now excluded by the caller (in flight); wecom_bot/b is due.
	n, err = q.ClaimNotification(b.ctx, 30, 130, []string{"email/a"})
	if err != nil || n.ID != "second" {
		t.Fatalf("claim = %+v, %v; want second", n, err)
	}
	if _, err := q.ClaimNotification(b.ctx, 30, 130, []string{"email/a"}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("third claim: %v, want ErrNotFound (late is not due)", err)
	}

	r := b.db.Reader()
	if at, ok, err := r.NextNotificationDue(b.ctx, nil); err != nil || !ok || at != 50 {
		t.Fatalf("next due = %d %t %v, want 50", at, ok, err)
	}
	if at, ok, err := r.NextNotificationDue(b.ctx, []string{"email/a"}); err != nil || ok {
		t.Fatalf("next due excluding email/a = %d %t %v, want none", at, ok, err)
	}
}

func TestCompleteIsGuardedByTheLease(t *testing.T) {
	t.Parallel()
	b := setupNotif(t)
	b.insert(t, "n", "r1", "email", "a", 10, 1)
	q := b.db.Writer()
	claim, err := q.ClaimNotification(b.ctx, 10, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The lease expires and the row is recovered, then claimed again by someone else.
	if n, err := q.RecoverSendingNotifications(b.ctx, 99, false); err != nil || n != 0 {
		t.Fatalf("recover before expiry = %d, %v", n, err)
	}
	if n, err := q.RecoverSendingNotifications(b.ctx, 101, false); err != nil || n != 1 {
		t.Fatalf("recover after expiry = %d, %v", n, err)
	}
	if b.get(t, "n").Status != storage.NotificationQueued {
		t.Fatal("expired row not re-queued")
	}
	second, err := q.ClaimNotification(b.ctx, 101, 200, nil)
	if err != nil {
		t.Fatal(err)
	}
	sentAt := int64(105)
	ok, err := q.CompleteNotification(b.ctx, "n", *claim.LeaseUntil, storage.NotificationOutcome{Status: storage.NotificationSent, Attempts: 1, SentAt: &sentAt}, 105)
	if err != nil || ok {
		t.Fatalf("stale completion applied: %t %v", ok, err)
	}
	msg, kind := "boom", "network"
	ok, err = q.CompleteNotification(b.ctx, "n", *second.LeaseUntil, storage.NotificationOutcome{Status: storage.NotificationQueued,
		Attempts: 1, NextAttemptAt: 140, LastError: &msg, LastErrorKind: &kind}, 110)
	if err != nil || !ok {
		t.Fatalf("current completion: %t %v", ok, err)
	}
	got := b.get(t, "n")
	if got.Status != storage.NotificationQueued || got.Attempts != 1 || got.NextAttemptAt != 140 || got.LeaseUntil != nil ||
		*got.LastError != "boom" || *got.LastErrorKind != "network" || got.SentAt != nil {
		t.Fatalf("row after retry = %+v", got)
	}
}

func TestRecoverAllSendingAtStart(t *testing.T) {
	t.Parallel()
	b := setupNotif(t)
	b.insert(t, "n", "r1", "email", "a", 10, 1)
	q := b.db.Writer()
	if _, err := q.ClaimNotification(b.ctx, 10, 1000, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := q.RecoverSendingNotifications(b.ctx, 11, true); err != nil || n != 1 {
		t.Fatalf("recover = %d, %v", n, err)
	}
	got := b.get(t, "n")
	if got.Status != storage.NotificationQueued || got.LeaseUntil != nil || got.Attempts != 0 {
		t.Fatalf("row = %+v", got)
	}
	if _, err := q.ReleaseNotification(b.ctx, "n", 1000, 12); err != nil {
		t.Fatal(err)
	}
}

func TestCancelRetryAndCancelOne(t *testing.T) {
	t.Parallel()
	b := setupNotif(t)
	b.insert(t, "e1", "r1", "email", "a", 10, 1)
	b.insert(t, "e2", "r2", "email", "b", 10, 2)
	b.insert(t, "w1", "r1", "wecom_bot", "a", 10, 3)
	b.insert(t, "w2", "r2", "wecom_bot", "a", 10, 4)
	q := b.db.Writer()
	if _, err := q.ClaimNotification(b.ctx, 10, 100, []string{"email/a", "email/b", "wecom_bot/a"}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal("claim ignored the exclusion list")
	}
	sending, err := q.ClaimNotification(b.ctx, 10, 100, []string{"email/a", "email/b"})
	if err != nil || sending.ID != "w1" {
		t.Fatalf("claim = %+v %v", sending, err)
	}

	if n, err := q.CancelQueuedNotifications(b.ctx, "email", "a", "canceled: destination disabled", 20); err != nil || n != 1 {
		t.Fatalf("cancel destination = %d %v", n, err)
	}
	if n, err := q.CancelQueuedNotifications(b.ctx, "wecom_bot", "", "canceled: channel disabled", 20); err != nil || n != 1 {
		t.Fatalf("cancel channel = %d %v (the sending row must be left alone)", n, err)
	}
	if b.get(t, "w1").Status != storage.NotificationSending {
		t.Fatal("a sending row was canceled")
	}
	if n, err := q.CancelQueuedNotifications(b.ctx, "", "", "canceled: notifications disabled", 20); err != nil || n != 1 {
		t.Fatalf("cancel all = %d %v", n, err)
	}
	for id, want := range map[string]string{"e1": "canceled: destination disabled", "w2": "canceled: channel disabled", "e2": "canceled: notifications disabled"} {
		if got := b.get(t, id); got.Status != storage.NotificationCanceled || *got.LastError != want {
			t.Errorf("%s = %s %v, want canceled %q", id, got.Status, got.LastError, want)
		}
	}

	if ok, err := q.RetryNotificationNow(b.ctx, "w1", 30); err != nil || ok {
		t.Fatalf("retry of a sending row = %t %v", ok, err)
	}
	if ok, err := q.RetryNotificationNow(b.ctx, "e1", 30); err != nil || !ok {
		t.Fatalf("retry of a canceled row = %t %v", ok, err)
	}
	if got := b.get(t, "e1"); got.Status != storage.NotificationQueued || got.NextAttemptAt != 30 || got.Attempts != 0 {
		t.Fatalf("retried row = %+v", got)
	}
	if ok, err := q.CancelQueuedNotification(b.ctx, "e1", "canceled: user", 31); err != nil || !ok {
		t.Fatalf("cancel queued = %t %v", ok, err)
	}
	if ok, err := q.CancelQueuedNotification(b.ctx, "e1", "canceled: user", 31); err != nil || ok {
		t.Fatalf("cancel canceled = %t %v", ok, err)
	}
}

// testKinds are today's channels as the engine's list describes them.
var testKinds = []storage.NotificationKind{{Channel: "wecom_bot", SecretKind: "wecom_bot"},
	{Channel: "email", SecretKind: "smtp"}, {Channel: "webhook", SecretKind: "webhook"}}

func TestDestinationFlags(t *testing.T) {
	t.Parallel()
	b := setupNotif(t)
	q := b.db.Writer()
	if err := q.SetNotificationDestinationEnabled(b.ctx, "hub", "smtp", "ops", false, 9); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("flag on a missing secret: %v, want ErrNotFound", err)
	}
	b.addSecret(t, "smtp", "ops")
	b.addSecret(t, "wecom_bot", "team")
	b.addSecret(t, "webhook", "hook")
	b.addSecret(t, "webdav", "nas") // not a notification kind
	if err := q.SetNotificationDestinationEnabled(b.ctx, "hub", "smtp", "ops", false, 9); err != nil {
		t.Fatal(err)
	}
	ds, err := b.db.Reader().ListNotificationDestinations(b.ctx, "hub", testKinds)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(ds)
	want := "[{email ops false 9} {webhook hook true 5} {wecom_bot team true 5}]"
	if got != want {
		t.Fatalf("destinations = %s, want %s", got, want)
	}
	names, err := b.db.Reader().EnabledNotificationDestinations(b.ctx, "hub", "smtp")
	if err != nil || len(names) != 0 {
		t.Fatalf("enabled email = %v %v", names, err)
	}
	if ex, en, err := b.db.Reader().NotificationDestinationState(b.ctx, "hub", "smtp", "ops"); err != nil || !ex || en {
		t.Fatalf("state = %t %t %v", ex, en, err)
	}
	if _, err := b.db.Writer().Exec(b.ctx, `DELETE FROM secrets WHERE kind = 'smtp' AND name = 'ops'`); err != nil {
		t.Fatal(err)
	}
	if ex, _, err := b.db.Reader().NotificationDestinationState(b.ctx, "hub", "smtp", "ops"); err != nil || ex {
		t.Fatalf("deleted destination exists=%t %v", ex, err)
	}
	var flags int
	if err := b.db.Reader().QueryRow(b.ctx, `SELECT COUNT(*) FROM notification_destinations`).Scan(&flags); err != nil || flags != 0 {
		t.Fatalf("flag rows after secret delete = %d %v, want 0 (cascade)", flags, err)
	}
}

func TestQueueListingFiltersAndKeysetPaging(t *testing.T) {
	t.Parallel()
	b := setupNotif(t)
	b.addSecret(t, "smtp", "ops")
	b.addSecret(t, "wecom_bot", "team")
	if err := b.db.Writer().SetNotificationDestinationEnabled(b.ctx, "hub", "wecom_bot", "team", false, 9); err != nil {
		t.Fatal(err)
	}
	// Two rows share created_at so that the id breaks the tie.
	b.insert(t, "a", "r1", "email", "ops", 1, 100)
	b.insert(t, "b", "r1", "wecom_bot", "team", 1, 100)
	b.insert(t, "c", "r2", "email", "gone", 1, 200)
	b.insert(t, "d", "r3", "email", "ops", 1, 300)
	if _, err := b.db.Writer().CancelQueuedNotifications(b.ctx, "email", "gone", "canceled: destination deleted", 5); err != nil {
		t.Fatal(err)
	}

	r := b.db.Reader()
	var ids []string
	f := storage.NotificationQueueFilter{Node: "hub", Kinds: testKinds, Limit: 2}
	for range 3 {
		page, err := r.ListNotificationQueue(b.ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page {
			ids = append(ids, it.ID)
		}
		if len(page) < 2 {
			break
		}
		last := page[len(page)-1]
		f.After = &storage.NotificationCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	if fmt.Sprint(ids) != "[d c b a]" {
		t.Fatalf("keyset pages = %v, want [d c b a]", ids)
	}

	all, err := r.ListNotificationQueue(b.ctx, storage.NotificationQueueFilter{Node: "hub", Kinds: testKinds, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]storage.NotificationQueueItem{}
	for _, it := range all {
		byID[it.ID] = it
	}
	if it := byID["c"]; !it.DestinationDeleted || it.DestinationEnabled || it.JobID != "j1" || it.JobName != "Nightly" {
		t.Errorf("c = %+v, want deleted, job Nightly", it)
	}
	if it := byID["b"]; it.DestinationDeleted || it.DestinationEnabled {
		t.Errorf("b = %+v, want present but disabled", it)
	}
	if it := byID["a"]; it.DestinationDeleted || !it.DestinationEnabled {
		t.Errorf("a = %+v, want present and enabled", it)
	}

	f = storage.NotificationQueueFilter{Node: "hub", Kinds: testKinds, Statuses: []string{"queued"}, Channels: []string{"email"}, Limit: 10}
	page, err := r.ListNotificationQueue(b.ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.CountNotificationQueue(b.ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0].ID != "d" || page[1].ID != "a" || n != 2 {
		t.Fatalf("filtered = %v (count %d), want d, a", page, n)
	}
	f.Offset, f.Limit = 1, 1
	page, err = r.ListNotificationQueue(b.ctx, f)
	if err != nil || len(page) != 1 || page[0].ID != "a" {
		t.Fatalf("offset page = %v %v", page, err)
	}
}

func TestGetNotificationRun(t *testing.T) {
	t.Parallel()
	b := setupNotif(t)
	nr, err := b.db.Reader().GetNotificationRun(b.ctx, "r1")
	if err != nil || nr.JobName != "Nightly" || nr.ID != "r1" || nr.Status != storage.RunSuccess {
		t.Fatalf("run = %+v %v", nr, err)
	}
	if _, err := b.db.Reader().GetNotificationRun(b.ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing run: %v", err)
	}
}

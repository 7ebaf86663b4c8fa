package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/notify/channel"
	"github.com/bastion-backup/bastion/engine/notify/channel/email"
	"github.com/bastion-backup/bastion/engine/notify/channel/webhook"
	"github.com/bastion-backup/bastion/engine/notify/channel/wecombot"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// memSecrets is an in-memory SecretReader. It also writes a placeholder row to the secrets table,
// because destinations are listed from it and their flags reference it.
type memSecrets struct {
	db *storage.DB
	mu sync.Mutex
	m  map[string][]byte
}

func (m *memSecrets) Get(_ context.Context, node, kind, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.m[node+"/"+kind+"/"+name]
	if !ok {
		return nil, fmt.Errorf("secret %s/%s: %w", kind, name, ErrSecretNotFound)
	}
	return b, nil
}

func (m *memSecrets) put(t *testing.T, kind, name string, payload any) {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.DecodePayload(kind, b); err != nil {
		t.Fatalf("test payload for %s/%s does not validate: %v", kind, name, err)
	}
	m.mu.Lock()
	m.m["hub/"+kind+"/"+name] = b
	m.mu.Unlock()
	if _, err := m.db.Writer().Exec(context.Background(), `INSERT INTO secrets(id, node_id, kind, name, kid, nonce, ciphertext, created_at, updated_at)
		VALUES (?, 'hub', ?, ?, 1, x'00', x'00', 1, 1) ON CONFLICT(kind, node_id, name) DO NOTHING`, kind+"/"+name, kind, name); err != nil {
		t.Fatal(err)
	}
}

type bundle struct {
	ctx     context.Context
	db      *storage.DB
	clock   *clock.Fake
	secrets *memSecrets
	svc     *Service
	stop    func()

	repMu   sync.Mutex
	reports []idleReport // what the worker reported each time it went to wait
}

// lastReport returns the worker's latest report and how many it has made.
func (b *bundle) lastReport() (idleReport, int) {
	b.repMu.Lock()
	defer b.repMu.Unlock()
	if len(b.reports) == 0 {
		return idleReport{}, 0
	}
	return b.reports[len(b.reports)-1], len(b.reports)
}

// waitSettled waits until the worker's latest report came after report number after, shows
// inflight deliveries and no pending wake: the worker is then blocked until its timer fires or
// something wakes it, so the test may move the clock.
func (b *bundle) waitSettled(t *testing.T, after, inflight int) (idleReport, int) {
	t.Helper()
	var r idleReport
	var n int
	waitUntil(t, fmt.Sprintf("worker settled with %d deliveries in flight", inflight), func() bool {
		r, n = b.lastReport()
		return n > after && r.inflight == inflight && !r.wakePending
	})
	return r, n
}

func setup(t *testing.T, tweak ...func(*Options)) *bundle {
	t.Helper()
	db := storagetest.Open(t)
	b := &bundle{ctx: context.Background(), db: db, clock: clock.NewFake(t0),
		secrets: &memSecrets{db: db, m: map[string][]byte{}}}
	opts := Options{DB: db, Secrets: b.secrets, Clock: b.clock, Logger: zerolog.New(zerolog.NewTestWriter(t)),
		PublicBaseURL: "https://backup.example.test", RateEvery: -1}
	for _, f := range tweak {
		f(&opts)
	}
	svc, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	b.svc = svc
	svc.hookIdle = func(r idleReport) {
		b.repMu.Lock()
		b.reports = append(b.reports, r)
		b.repMu.Unlock()
	}
	if err := db.Write(b.ctx, func(q storage.Q) error {
		return q.InsertJob(b.ctx, storage.Job{ID: "job-1", Name: "Nightly", ScheduleTimezone: "UTC",
			OverlapPolicy: "queue", MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1})
	}); err != nil {
		t.Fatal(err)
	}
	return b
}

// start runs the worker until the test ends.
func (b *bundle) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- b.svc.Run(ctx) }()
	b.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		b.stop = func() {}
	}
	t.Cleanup(func() { b.stop() })
}

// finishRun stores a run that ended with status and queues its notifications in the same
// transaction, as the run queue does, then wakes the worker.
func (b *bundle) finishRun(t *testing.T, runID, status string, spec JobNotifications, mutate ...func(*storage.Run)) int {
	t.Helper()
	ended := b.clock.Now().Unix()
	r := storage.Run{ID: runID, JobID: "job-1", Status: status, StartedAt: ended - 60, EndedAt: &ended}
	for _, m := range mutate {
		m(&r)
	}
	var n int
	if err := b.db.Write(b.ctx, func(q storage.Q) error {
		if err := q.InsertRun(b.ctx, r); err != nil {
			return err
		}
		var err error
		n, err = b.svc.EnqueueForRun(b.ctx, q, RunInfo{ID: runID, Status: status}, spec)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	b.svc.Wake()
	return n
}

func (b *bundle) rows(t *testing.T, runID string) []storage.Notification {
	t.Helper()
	rows, err := b.db.Reader().Query(b.ctx, `SELECT id FROM notifications WHERE run_id = ? ORDER BY channel, secret_name`, runID)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	var out []storage.Notification
	for _, id := range ids {
		n, err := b.db.Reader().GetNotification(b.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func (b *bundle) row(t *testing.T, runID, channel, dest string) storage.Notification {
	t.Helper()
	for _, n := range b.rows(t, runID) {
		if n.Channel == channel && n.SecretName == dest {
			return n
		}
	}
	t.Fatalf("no notification for run %s via %s/%s", runID, channel, dest)
	return storage.Notification{}
}

// waitRow polls until the row satisfies cond (the test's deadline bounds it).
func (b *bundle) waitRow(t *testing.T, runID, channel, dest, what string, cond func(storage.Notification) bool) storage.Notification {
	t.Helper()
	var last storage.Notification
	waitUntil(t, what, func() bool {
		last = b.row(t, runID, channel, dest)
		return cond(last)
	})
	return last
}

func status(s string) func(storage.Notification) bool {
	return func(n storage.Notification) bool { return n.Status == s }
}

// waitArmedAt waits until the worker, with inflight deliveries, sleeps until at.
func (b *bundle) waitArmedAt(t *testing.T, at time.Time, inflight int) {
	t.Helper()
	waitUntil(t, "worker asleep until "+at.Format(time.RFC3339), func() bool {
		r, n := b.lastReport()
		return n > 0 && r.inflight == inflight && !r.wakePending && r.armed && r.deadline.Equal(at)
	})
}

// advanceTo moves the fake clock to at the way time passes for an idle worker: it waits for the
// worker to settle, then ends its sleep, until at is reached (the worker sleeps at most maxSleep
// at a time, so a long wait is several steps).
func (b *bundle) advanceTo(t *testing.T, at time.Time) {
	t.Helper()
	seen := 0
	for b.clock.Now().Before(at) {
		r, n := b.waitSettled(t, seen, 0)
		seen = n
		if !r.armed {
			t.Fatalf("worker sleeps until woken; waiting for %s would never end", at)
		}
		if r.deadline.After(at) {
			b.clock.Set(at)
			return
		}
		b.clock.Set(r.deadline)
	}
}

func (b *bundle) events(t *testing.T, runID string) []storage.RunEvent {
	t.Helper()
	evs, err := b.db.Reader().ListRunEvents(b.ctx, runID, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func eventFields(t *testing.T, e storage.RunEvent) map[string]any {
	t.Helper()
	var m map[string]any
	if e.FieldsJSON == nil || json.Unmarshal([]byte(*e.FieldsJSON), &m) != nil {
		t.Fatalf("event %s has no JSON fields", e.Kind)
	}
	return m
}

// waitUntil polls cond until it holds or the test's deadline is near.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	if d, ok := t.Deadline(); ok && d.Add(-2*time.Second).Before(deadline) {
		deadline = d.Add(-2 * time.Second)
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// hook is a webhook receiver: each request is recorded, then answered by the current handler.
type hook struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []hookReq
	got  chan hookReq
	h    http.HandlerFunc
}

type hookReq struct {
	header http.Header
	body   []byte
}

func newHook(t *testing.T, h http.HandlerFunc) *hook {
	t.Helper()
	k := &hook{got: make(chan hookReq, 100), h: h}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := hookReq{header: r.Header.Clone(), body: body}
		k.mu.Lock()
		k.reqs = append(k.reqs, req)
		h := k.h
		k.mu.Unlock()
		k.got <- req
		h(w, r)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *hook) set(h http.HandlerFunc) {
	k.mu.Lock()
	k.h = h
	k.mu.Unlock()
}

func (k *hook) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.reqs)
}

func ok204(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }

func fail500(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusInternalServerError)
	io.WriteString(w, "receiver exploded")
}

// Channel names, as the tests spell them.
const (
	ChannelWeComBot = wecombot.Name
	ChannelEmail    = email.Name
	ChannelWebhook  = webhook.Name
)

// gatedWebhook blocks attempts to chosen webhook destinations until released, for tests that act
// while a delivery is in flight. It wraps the real webhook driver, as a fault-injecting channel
// would.
type gatedWebhook struct {
	webhook.Driver
	mu      sync.Mutex
	gates   map[string]chan error // by webhook URL; a nil error lets the attempt through
	entered chan string
}

func (g *gatedWebhook) gate(url string) chan error {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := make(chan error, 1)
	g.gates[url] = c
	return c
}

func (g *gatedWebhook) Send(ctx context.Context, m channel.Message) error {
	url := m.Destination.(webhook.Destination).URL
	g.mu.Lock()
	c := g.gates[url]
	g.mu.Unlock()
	if c != nil {
		g.mu.Lock()
		delete(g.gates, url) // one-shot: the next attempt goes through
		g.mu.Unlock()
		g.entered <- url
		select {
		case err := <-c:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Driver.Send(ctx, m)
}

// list is the channel list with the webhook driver replaced by g.
func (g *gatedWebhook) list() channel.List {
	l := Channels()
	for i, d := range l {
		if d.Name() == webhook.Name {
			l[i] = g
		}
	}
	return l
}

func newGated() *gatedWebhook {
	return &gatedWebhook{gates: map[string]chan error{}, entered: make(chan string, 16)}
}

package agentsock_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// recordingSink is a TaskSink with the run queue's first-result-wins rule: it counts every call
// and every result that took effect.
type recordingSink struct {
	mu      sync.Mutex
	calls   map[string]int
	applied map[string]protocol.TaskResult
	events  map[string][]string
}

func newSink() *recordingSink {
	return &recordingSink{calls: map[string]int{}, applied: map[string]protocol.TaskResult{}, events: map[string][]string{}}
}

func (s *recordingSink) Event(_ context.Context, t storage.AgentTask, ev *protocol.RunEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events[t.ID] = append(s.events[t.ID], ev.Kind+":"+ev.Message)
	return nil
}

func (s *recordingSink) Result(_ context.Context, t storage.AgentTask, res *protocol.TaskResult) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[t.ID]++
	if _, ok := s.applied[t.ID]; !ok {
		s.applied[t.ID] = *res
	}
	return nil
}

func (s *recordingSink) result(id string) (protocol.TaskResult, int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.applied[id]
	return r, s.calls[id], ok
}

func (s *recordingSink) eventsOf(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events[id]...)
}

type testHub struct {
	db   *storage.DB
	hub  *agentsock.Hub
	srv  *httptest.Server
	sink *recordingSink // what the Hub reports to; nil when it reports elsewhere (a bridge, serveTestHub)
	url  string
	stop func()
}

type hubOpts struct {
	ackTimeout time.Duration
	db         *storage.DB
	sink       *recordingSink
	// bridge replaces the recording sink with a run bridge.
	bridge *agentsock.RunBridge
	clock  clock.Clock // the wall clock when nil
}

func newTestHub(t testing.TB, o hubOpts) *testHub {
	t.Helper()
	if o.db == nil {
		o.db = storagetest.Open(t)
	}
	if o.sink == nil {
		o.sink = newSink()
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	if o.clock == nil {
		o.clock = clock.Real{}
	}
	cfg := agentsock.Config{DB: o.db, Clock: o.clock, Logger: log, Sink: o.sink, AckTimeout: o.ackTimeout}
	if o.bridge != nil {
		cfg.Sink, cfg.OnConnect = o.bridge, o.bridge.AgentConnected
	}
	th := serveTestHub(t, agentsock.New(cfg), o.db)
	if o.bridge == nil {
		th.sink = o.sink
	}
	return th
}

// runLoop runs a service's loop until the test ends; the cleanup stops it and waits for it.
func runLoop(t testing.TB, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// newEnrollToken stores a token with the given uses (nil: unlimited) valid for an hour.
func newEnrollToken(t testing.TB, db *storage.DB, uses *int64) string {
	t.Helper()
	tok := protocol.NewToken()
	hash, _ := protocol.HashToken(tok)
	now := time.Now().Unix()
	if err := db.Writer().InsertEnrollmentToken(context.Background(), storage.EnrollmentToken{TokenHash: hash, CreatedAt: now, ExpiresAt: now + 3600, RemainingUses: uses}); err != nil {
		t.Fatal(err)
	}
	return tok
}

// newSecretStore is a secrets store in db with a fresh master key.
func newSecretStore(t testing.TB, db *storage.DB) *secrets.Store {
	t.Helper()
	keys, err := secrets.NewKeyring(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return secrets.NewStore(db, keys, clock.Real{})
}

// waitFor polls cond until it holds or the test's deadline (capped at 60 s) passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok && dl.Add(-5*time.Second).Before(deadline) {
			deadline = dl.Add(-5 * time.Second)
		}
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dispatch stores and sends a backup task for agentID.
func (th *testHub) dispatch(t testing.TB, agentID, taskID string) {
	t.Helper()
	payload, _ := protocol.Encode(&protocol.Task{TaskID: taskID, Task: protocol.BackupTask{RunID: taskID, JobID: "job", StartedAt: time.Now().Unix(), Spec: []byte(`{"type":"filesystem"}`)}})
	if _, err := th.hub.Dispatch(context.Background(), storage.AgentTask{ID: taskID, AgentID: agentID, RunID: taskID, Kind: storage.AgentTaskBackup, PayloadJSON: string(payload)}, nil); err != nil {
		t.Fatal(err)
	}
}

func (th *testHub) task(t testing.TB, id string) storage.AgentTask {
	t.Helper()
	tk, err := th.db.Reader().GetAgentTask(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func openDBAt(t testing.TB, path string) *storage.DB {
	t.Helper()
	db, err := storage.Open(context.Background(), path, storage.Options{Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// serveTestHub serves an already built Hub (for tests that configure it themselves).
func serveTestHub(t testing.TB, h *agentsock.Hub, db *storage.DB) *testHub {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	r := chi.NewRouter()
	r.Use(middleware.RequestID(log), middleware.ClientIP(nil, false))
	h.Routes(r)
	srv := httptest.NewServer(r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Run(ctx)
	}()
	th := &testHub{db: db, hub: h, srv: srv, url: srv.URL}
	th.stop = sync.OnceFunc(func() {
		cancel()
		<-done
		// Run closed the Hub on its way out; Close again is a no-op that says what the test relies
		// on: no goroutine of an agent socket outlives the test (and logs through its writer).
		h.Close()
		srv.CloseClientConnections()
		srv.Close()
	})
	t.Cleanup(th.stop)
	return th
}

package agentsock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage"
)

// countingExecutor counts executions per task and blocks each until released.
type countingExecutor struct {
	mu      sync.Mutex
	runs    map[string]int
	release chan struct{}
	started chan string
}

func newExecutor() *countingExecutor {
	return &countingExecutor{runs: map[string]int{}, release: make(chan struct{}), started: make(chan string, 16)}
}

func (e *countingExecutor) Execute(ctx context.Context, t *protocol.Task, emit func(*protocol.RunEvent)) protocol.TaskResult {
	e.mu.Lock()
	e.runs[t.TaskID]++
	e.mu.Unlock()
	emit(&protocol.RunEvent{RunID: t.Task.RunID, Level: "info", Kind: "start", Message: "started"})
	e.started <- t.TaskID
	select {
	case <-e.release:
	case <-ctx.Done():
		msg := "canceled"
		return protocol.TaskResult{Status: protocol.StatusCanceled, Error: &msg}
	}
	emit(&protocol.RunEvent{RunID: t.Task.RunID, Level: "info", Kind: "complete", Message: "done"})
	return protocol.TaskResult{Status: protocol.StatusSuccess, Summary: json.RawMessage(`{"files":1}`)}
}

func (e *countingExecutor) count(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runs[id]
}

type runningAgent struct {
	a    *client.Agent
	dir  string
	done chan error
	stop context.CancelFunc
}

func startAgent(t *testing.T, hubURL, token, dir string, ex client.Executor, hb time.Duration) *runningAgent {
	t.Helper()
	return startAgentWith(t, client.Options{HubURL: hubURL, EnrollToken: token, Name: "test", DataDir: dir, Heartbeat: hb, Executor: ex})
}

func startAgentWith(t *testing.T, o client.Options) *runningAgent {
	t.Helper()
	dir := o.DataDir
	o.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	o.Backoff = &client.Backoff{Base: 10 * time.Millisecond, Cap: 100 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := client.New(ctx, o)
	if err != nil {
		cancel()
		t.Fatalf("start agent: %v", err)
	}
	ra := &runningAgent{a: a, dir: dir, done: make(chan error, 1), stop: cancel}
	go func() { ra.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-ra.done
	})
	return ra
}

func TestEnrollConnectRunAcknowledge(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	ex := newExecutor()
	ra := startAgent(t, th.url, newEnrollToken(t, th.db, nil), t.TempDir(), ex, time.Second)
	waitFor(t, "agent connected", func() bool { return th.hub.Connected(ra.a.ID()) })

	st, err := os.Stat(filepath.Join(ra.dir, "agent.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("agent.json: %v %v", st, err)
	}
	th.dispatch(t, ra.a.ID(), "run-1")
	<-ex.started
	waitFor(t, "ack recorded", func() bool { return th.task(t, "run-1").AckedAt != nil })
	close(ex.release)
	waitFor(t, "result applied", func() bool { _, _, ok := th.sink.result("run-1"); return ok })
	waitFor(t, "task completed", func() bool { return th.task(t, "run-1").CompletedAt != nil })
	res, calls, _ := th.sink.result("run-1")
	if res.Status != protocol.StatusSuccess || calls != 1 || ex.count("run-1") != 1 {
		t.Fatalf("result %+v, sink calls %d, executions %d", res, calls, ex.count("run-1"))
	}
	if evs := th.sink.eventsOf("run-1"); len(evs) != 2 {
		t.Fatalf("events %v", evs)
	}
	// The agent stops re-sending once the Hub acknowledged the result.
	rec := filepath.Join(ra.dir, "agent", "tasks", "run-1.json")
	waitFor(t, "result acknowledged on the agent", func() bool {
		b, _ := os.ReadFile(rec)
		return bytes.Contains(b, []byte(`"result_acked":true`))
	})
}

func TestHelloStoresCapabilitiesAndHeartbeat(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	ra := startAgent(t, th.url, newEnrollToken(t, th.db, nil), t.TempDir(), newExecutor(), 200*time.Millisecond)
	waitFor(t, "hello stored", func() bool {
		a, err := th.db.Reader().GetAgent(context.Background(), ra.a.ID())
		return err == nil && a.CapabilitiesJSON != nil && a.Name != nil && *a.Name == "test" && a.LastSeenAt != nil
	})
}

func TestEnrollErrors(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	one := int64(1)
	tok := newEnrollToken(t, th.db, &one)
	post := func(body string) (int, string, string) {
		resp, err := http.Post(th.url+"/agent/enroll", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var env struct {
			Error   string                  `json:"error"`
			Details struct{ Reason string } `json:"details"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&env)
		return resp.StatusCode, env.Error, env.Details.Reason
	}
	if code, _, _ := post(`{"token":"` + tok + `","name":"a"}`); code != 200 {
		t.Fatalf("first use: %d", code)
	}
	if code, e, r := post(`{"token":"` + tok + `"}`); code != 401 || e != "invalid_token" || r != "not_found" {
		t.Fatalf("single-use token used twice: %d %s %s", code, e, r)
	}
	if code, e, r := post(`{"token":"not-a-token"}`); code != 401 || e != "invalid_token" || r != "invalid_format" {
		t.Fatalf("malformed token: %d %s %s", code, e, r)
	}
	expired := protocol.NewToken()
	hash, _ := protocol.HashToken(expired)
	if err := th.db.Writer().InsertEnrollmentToken(context.Background(), storage.EnrollmentToken{TokenHash: hash, CreatedAt: 1, ExpiresAt: 2}); err != nil {
		t.Fatal(err)
	}
	if code, e, _ := post(`{"token":"` + expired + `"}`); code != 401 || e != "expired_token" {
		t.Fatalf("expired token: %d %s", code, e)
	}
	if code, e, _ := post(`{"token":"` + expired + `"}`); code != 401 || e != "invalid_token" {
		t.Fatalf("expired token was not deleted: %d %s", code, e)
	}
}

func TestAgentStartupFatalCases(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	ctx := context.Background()
	o := client.Options{HubURL: th.url, DataDir: t.TempDir(), Logger: zerolog.Nop()}
	if _, err := client.New(ctx, o); err == nil {
		t.Fatal("no identity and no token: want an error")
	}
	o.EnrollToken = protocol.NewToken()
	if _, err := client.New(ctx, o); err == nil {
		t.Fatal("refused enrollment: want an error")
	}
	o.EnrollToken = newEnrollToken(t, th.db, nil)
	if _, err := client.New(ctx, o); err != nil {
		t.Fatal(err)
	}
	o.HubURL = "http://other.invalid:1"
	if _, err := client.New(ctx, o); err == nil {
		t.Fatal("hub URL differs from agent.json: want an error")
	}
}

func TestUnauthorizedAndRevokedBeforeUpgrade(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	dial := func(key string) (int, string) {
		_, resp, err := websocket.Dial(context.Background(), "ws"+th.url[4:]+"/agent/ws", &websocket.DialOptions{
			HTTPHeader: http.Header{"Authorization": {"Bearer " + key}}})
		if err == nil {
			t.Fatal("upgrade succeeded")
		}
		var env struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&env)
		return resp.StatusCode, env.Error
	}
	if code, e := dial(protocol.NewToken()); code != 401 || e != "unauthorized" {
		t.Fatalf("unknown key: %d %s", code, e)
	}
	if code, e := dial("garbage"); code != 401 || e != "unauthorized" {
		t.Fatalf("bad key: %d %s", code, e)
	}
	key := insertAgentKey(t, th.db, "rv")
	if err := th.db.Writer().RevokeAgent(context.Background(), "rv", 2); err != nil {
		t.Fatal(err)
	}
	if code, e := dial(key); code != 401 || e != "revoked" {
		t.Fatalf("revoked key: %d %s", code, e)
	}
}

func TestRevokeClosesSocketAndAgentStops(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	ra := startAgent(t, th.url, newEnrollToken(t, th.db, nil), t.TempDir(), newExecutor(), time.Second)
	waitFor(t, "agent connected", func() bool { return th.hub.Connected(ra.a.ID()) })
	if err := th.db.Writer().RevokeAgent(context.Background(), ra.a.ID(), time.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	th.hub.Disconnect(ra.a.ID(), protocol.CloseRevoked, "revoked")
	select {
	case err := <-ra.done:
		ra.done <- err // for the cleanup
		if !errors.Is(err, client.ErrRevoked) {
			t.Fatalf("agent ended with %v, want ErrRevoked", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("revoked agent kept running")
	}
}

func TestRotatedKeyStopsAgent(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	ra := startAgent(t, th.url, newEnrollToken(t, th.db, nil), t.TempDir(), newExecutor(), time.Second)
	waitFor(t, "agent connected", func() bool { return th.hub.Connected(ra.a.ID()) })
	hash, _ := protocol.HashToken(protocol.NewToken())
	if err := th.db.Writer().RotateAgentKey(context.Background(), ra.a.ID(), hash, time.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	th.hub.Disconnect(ra.a.ID(), protocol.CloseKeyRotated, "key rotated")
	select {
	case err := <-ra.done:
		ra.done <- err
		if !errors.Is(err, client.ErrKeyRotated) {
			t.Fatalf("agent ended with %v, want ErrKeyRotated", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent with a rotated key kept running")
	}
}

// TestSecondConnectionReplacesFirst: the newest connection wins, the old one gets 4000, and the
// old one's teardown leaves the new registration alone.
func TestSecondConnectionReplacesFirst(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	key := insertAgentKey(t, th.db, "dup")
	first := dialAgent(t, th.url, key)
	waitFor(t, "first registered", func() bool { return th.hub.Connected("dup") })
	second := dialAgent(t, th.url, key)
	_, _, err := first.Read(context.Background())
	if websocket.CloseStatus(err) != protocol.CloseReplaced {
		t.Fatalf("first connection ended with %v, want close 4000", err)
	}
	// The second still works: a ping gets a pong, and it stays registered.
	ping, _ := protocol.Encode(&protocol.Ping{})
	if err := second.Write(context.Background(), websocket.MessageText, ping); err != nil {
		t.Fatal(err)
	}
	_, data, err := second.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m, err := protocol.Decode(data); err != nil || m.MessageType() != protocol.TypePong {
		t.Fatalf("second connection got %s %v", data, err)
	}
	if !th.hub.Connected("dup") {
		t.Fatal("the replaced connection's teardown unregistered the new one")
	}
}

func TestResultFromNonOwnerIgnored(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	ctx := context.Background()
	insertAgentKey(t, th.db, "owner")
	thief := insertAgentKey(t, th.db, "thief")
	th.dispatch(t, "owner", "t-owned")
	c := dialAgent(t, th.url, thief)
	for _, m := range []protocol.Message{
		&protocol.Ack{TaskID: "t-owned"},
		&protocol.TaskResult{TaskID: "t-owned", RunID: "t-owned", Status: protocol.StatusSuccess},
		&protocol.Ping{},
	} {
		b, _ := protocol.Encode(m)
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	// Frames are handled in order: once the pong is back, the result has been handled.
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := protocol.Decode(data)
		if m == nil {
			continue
		}
		if m.MessageType() == protocol.TypeTaskResultAck {
			t.Fatal("the Hub acknowledged another agent's result")
		}
		if m.MessageType() == protocol.TypePong {
			break
		}
	}
	if _, calls, _ := th.sink.result("t-owned"); calls != 0 {
		t.Fatal("a result from a non-owner was applied")
	}
	if tk := th.task(t, "t-owned"); tk.AckedAt != nil || tk.CompletedAt != nil {
		t.Fatalf("task changed by a non-owner: %+v", tk)
	}
}

// TestFsListOverSocket lists a directory on the agent and fails fast when it is offline.
func TestFsListOverSocket(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	ra := startAgent(t, th.url, newEnrollToken(t, th.db, nil), t.TempDir(), newExecutor(), time.Second)
	waitFor(t, "agent connected", func() bool { return th.hub.Connected(ra.a.ID()) })
	dir := t.TempDir()
	for _, n := range []string{"b.txt", "a.txt", ".hidden"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	limit := 1
	hide := true
	res, err := th.hub.FsList(context.Background(), ra.a.ID(), protocol.FsList{Path: dir, ListOptions: protocol.ListOptions{Limit: &limit, HideDotfiles: &hide}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != 1 || res.Entries[0].Name != "a.txt" || res.NextCursor == nil || *res.Total != 2 {
		t.Fatalf("first page: %+v", res)
	}
	res, err = th.hub.FsList(context.Background(), ra.a.ID(), protocol.FsList{Path: filepath.Join(dir, "a.txt")})
	if err != nil || res.ErrorCode == nil || *res.ErrorCode != "not_directory" {
		t.Fatalf("file as dir: %+v %v", res, err)
	}
	if _, err := th.hub.FsList(context.Background(), "nobody", protocol.FsList{Path: dir}); !errors.Is(err, agentsock.ErrAgentOffline) {
		t.Fatalf("offline agent: %v", err)
	}
}

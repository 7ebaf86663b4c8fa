package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
)

// fakeHub is a Hub reduced to its agent socket: each connection the agent opens is handed to the
// test, which plays the Hub's side frame by frame.
type fakeHub struct {
	url   string
	conns chan *hubConn
}

type hubConn struct {
	t  *testing.T
	ws *websocket.Conn
}

func newFakeHub(t *testing.T) *fakeHub {
	t.Helper()
	h := &fakeHub{conns: make(chan *hubConn, 4)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/agent/ws" {
			http.NotFound(w, r)
			return
		}
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ws.SetReadLimit(readLimit)
		h.conns <- &hubConn{t: t, ws: ws}
	}))
	h.url = srv.URL
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		for { // connections the test never took
			select {
			case c := <-h.conns:
				c.ws.CloseNow()
			default:
				return
			}
		}
	})
	return h
}

// next waits for the agent's next connection.
func (h *fakeHub) next(t *testing.T) *hubConn {
	t.Helper()
	select {
	case c := <-h.conns:
		t.Cleanup(func() { c.ws.CloseNow() })
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not connect")
		return nil
	}
}

func (c *hubConn) send(m protocol.Message) {
	c.t.Helper()
	b, err := protocol.Encode(m)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.ws.Write(context.Background(), websocket.MessageText, b); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next frame of type typ, skipping others.
func (c *hubConn) read(typ string) protocol.Message {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, data, err := c.ws.Read(ctx)
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m, err := protocol.Decode(data); err == nil && m.MessageType() == typ {
			return m
		}
	}
}

// startAgent runs an agent already enrolled with h (agent.json written) until the test ends.
func startAgent(t *testing.T, h *fakeHub, o Options) (*Agent, chan error) {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	o.HubURL = h.url
	o.Logger = zerolog.New(zerolog.NewTestWriter(t))
	if err := saveIdentity(o.DataDir, &Identity{V: 1, HubURL: h.url, AgentID: "agent-1", AgentKey: protocol.NewToken(), EnrolledAt: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return a, done
}

// countingExec counts the backups and restores it is asked to run.
type countingExec struct {
	mu    sync.Mutex
	calls int
}

func (e *countingExec) Execute(context.Context, *protocol.Task, func(*protocol.RunEvent)) protocol.TaskResult {
	e.mu.Lock()
	e.calls++
	e.mu.Unlock()
	return protocol.TaskResult{Status: protocol.StatusSuccess}
}

func (e *countingExec) Restore(context.Context, *protocol.RestoreTask, func(*protocol.OperationEvent)) protocol.OperationResult {
	e.mu.Lock()
	e.calls++
	e.mu.Unlock()
	return protocol.OperationResult{Status: protocol.StatusSuccess}
}

func (e *countingExec) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

// TestCancelBeforeItsTask: a cancel can overtake the task it cancels (a re-send after a
// reconnect); the agent remembers it, acknowledges the task when it arrives and ends it canceled
// without running it — whether the cancel names the task (task id = run id), the run of a task
// with its own id, or a restore.
func TestCancelBeforeItsTask(t *testing.T) {
	t.Parallel()
	ex := &countingExec{}
	h := newFakeHub(t)
	startAgent(t, h, Options{Heartbeat: time.Minute, Executor: ex, Restorer: ex})
	c := h.next(t)
	c.read(protocol.TypeHello)

	backup := func(taskID, runID string) *protocol.Task {
		return &protocol.Task{TaskID: taskID, Task: protocol.BackupTask{RunID: runID, JobID: "j", StartedAt: 1, Spec: json.RawMessage(`{}`)}}
	}
	for _, tc := range []struct{ task, run string }{{"r1", "r1"}, {"t2", "r2"}} {
		c.send(&protocol.CancelRunTask{RunID: tc.run})
		c.send(backup(tc.task, tc.run))
		if ack := c.read(protocol.TypeAck).(*protocol.Ack); ack.TaskID != tc.task {
			t.Fatalf("ack %+v, want task %s", ack, tc.task)
		}
		res := c.read(protocol.TypeTaskResult).(*protocol.TaskResult)
		if res.TaskID != tc.task || res.RunID != tc.run || res.Status != protocol.StatusCanceled {
			t.Fatalf("result %+v, want %s canceled", res, tc.task)
		}
	}
	c.send(&protocol.CancelOperationTask{OpID: "op1"})
	c.send(&protocol.RestoreTask{TaskID: "op1", Task: protocol.RestoreRequest{OpID: "op1", RunID: "r1"}})
	c.read(protocol.TypeAck)
	if res := c.read(protocol.TypeOperationResult).(*protocol.OperationResultMsg); res.Result.OpID != "op1" || res.Result.Status != protocol.StatusCanceled {
		t.Fatalf("restore result %+v, want canceled", res.Result)
	}
	if n := ex.count(); n != 0 {
		t.Fatalf("%d canceled tasks were run", n)
	}
}

// TestBackoffResetsAfterAHealthyMinute: a connection that stayed up for a minute resets the
// reconnect backoff to its base; a shorter one does not.
func TestBackoffResetsAfterAHealthyMinute(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		up   time.Duration
		want time.Duration
	}{
		{"UpAMinute", BackoffResetAfter + time.Second, time.Second},
		{"UpLess", 31 * time.Second, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			b := &Backoff{Base: time.Second, Cap: 30 * time.Second, Jitter: JitterNone}
			for range 5 { // earlier failures: the next delay would be the cap
				b.Next()
			}
			h := newFakeHub(t)
			// A 10 s heartbeat: with no frame from the Hub the agent drops the link after 30 s.
			startAgent(t, h, Options{Heartbeat: 10 * time.Second, Clock: fake, Backoff: b})
			c := h.next(t)
			c.read(protocol.TypeHello)
			c.read(protocol.TypePing) // the heartbeat is running; its next tick is 10 s away
			eventually(t, "heartbeat armed", func() bool {
				d, ok := fake.NextDeadline()
				return ok && d.Equal(fake.Now().Add(10*time.Second))
			})
			fake.Advance(tc.up) // the Hub stays silent: the agent gives the link up, after tc.up
			want := fake.Now().Add(tc.want)
			eventually(t, "reconnect delay armed", func() bool {
				d, ok := fake.NextDeadline()
				return ok && d.Equal(want)
			})
		})
	}
}

package agentsock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/storage"
)

// The fault tests run the agent client in a child process (this test binary, re-executed), so
// that kill -9 is real and nothing is shared with the Hub but the network.

const childEnv = "AGENTSOCK_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "1":
		os.Exit(childMain())
	case "swarm":
		os.Exit(swarmMain())
	case "real":
		os.Exit(realChildMain())
	}
	os.Exit(m.Run())
}

// childMain is the agent process: client.Run with an executor that leaves one marker file per
// execution and finishes a task only when the test creates its release file.
func childMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	hb, _ := time.ParseDuration(os.Getenv("CHILD_HEARTBEAT"))
	markers := os.Getenv("CHILD_MARKERS")
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	exec := client.ExecutorFunc(func(ctx context.Context, t *protocol.Task, emit func(*protocol.RunEvent)) protocol.TaskResult {
		name := fmt.Sprintf("exec-%s-%d-%d", t.TaskID, os.Getpid(), time.Now().UnixNano())
		if err := os.WriteFile(filepath.Join(markers, name), nil, 0o600); err != nil {
			panic(err)
		}
		emit(&protocol.RunEvent{RunID: t.Task.RunID, Level: "info", Kind: "start", Message: "started"})
		for {
			if _, err := os.Stat(filepath.Join(markers, "release-"+t.TaskID)); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				msg := "canceled"
				return protocol.TaskResult{Status: protocol.StatusCanceled, Error: &msg}
			case <-time.After(10 * time.Millisecond):
			}
		}
		emit(&protocol.RunEvent{RunID: t.Task.RunID, Level: "info", Kind: "complete", Message: "done"})
		return protocol.TaskResult{Status: protocol.StatusSuccess, Summary: json.RawMessage(`{"files":1}`)}
	})
	err := client.Run(ctx, client.Options{
		HubURL: os.Getenv("CHILD_HUB_URL"), EnrollToken: os.Getenv("CHILD_TOKEN"), DataDir: os.Getenv("CHILD_DATA_DIR"),
		Heartbeat: hb, Executor: exec, Logger: log,
		Backoff: &client.Backoff{Base: 50 * time.Millisecond, Cap: 300 * time.Millisecond},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	return 0
}

type childAgent struct {
	t       *testing.T
	cmd     *exec.Cmd
	dataDir string
	markers string
	log     *bytes.Buffer
	done    chan struct{}
}

const faultHeartbeat = 200 * time.Millisecond

func startChild(t *testing.T, hubURL, token, dataDir, markers string) *childAgent {
	t.Helper()
	return startChildProcess(t, dataDir, markers, childEnv+"=1", "CHILD_HUB_URL="+hubURL, "CHILD_TOKEN="+token,
		"CHILD_HEARTBEAT="+faultHeartbeat.String())
}

// startChildProcess runs this test binary as an agent process with env added to the test's
// environment (childEnv picks its main); its log is printed if the test fails.
func startChildProcess(t *testing.T, dataDir, markers string, env ...string) *childAgent {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CHILD_DATA_DIR="+dataDir, "CHILD_MARKERS="+markers)
	cmd.Env = append(cmd.Env, env...)
	var buf bytes.Buffer
	cmd.Stderr = &syncWriter{w: &buf}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childAgent{t: t, cmd: cmd, dataDir: dataDir, markers: markers, log: &buf, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("agent process %d log:\n%s", cmd.Process.Pid, buf.String())
		}
	})
	return c
}

func (c *childAgent) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *childAgent) kill9() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

func (c *childAgent) agentID() string {
	c.t.Helper()
	var id string
	waitFor(c.t, "agent.json", func() bool {
		b, err := os.ReadFile(filepath.Join(c.dataDir, "agent.json"))
		if err != nil {
			return false
		}
		var doc struct {
			AgentID string `json:"agent_id"`
		}
		_ = json.Unmarshal(b, &doc)
		id = doc.AgentID
		return id != ""
	})
	return id
}

func executions(t testing.TB, markers, taskID string) int {
	t.Helper()
	es, err := os.ReadDir(markers)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if strings.HasPrefix(e.Name(), "exec-"+taskID+"-") {
			n++
		}
	}
	return n
}

func release(t testing.TB, markers, taskID string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(markers, "release-"+taskID), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

func resultAckedOnAgent(dataDir, taskID string) bool {
	b, _ := os.ReadFile(filepath.Join(dataDir, "agent", "tasks", taskID+".json"))
	return bytes.Contains(b, []byte(`"result_acked":true`))
}

// faultSetup is a Hub behind a fault proxy with a child agent connected through it.
type faultSetup struct {
	hub     *testHub
	proxy   *faultProxy
	child   *childAgent
	agentID string
	markers string
	dataDir string
}

func newFaultSetup(t *testing.T) *faultSetup {
	t.Helper()
	th := newTestHub(t, hubOpts{ackTimeout: time.Second})
	px := newFaultProxy(t, th.srv.Listener.Addr().String())
	dataDir, markers := t.TempDir(), t.TempDir()
	ch := startChild(t, px.url(), newEnrollToken(t, th.db, nil), dataDir, markers)
	fs := &faultSetup{hub: th, proxy: px, child: ch, agentID: ch.agentID(), markers: markers, dataDir: dataDir}
	// The agent's hello has come through the proxy: its socket is up at both ends.
	waitFor(t, "agent connected", func() bool {
		a, err := th.db.Reader().GetAgent(context.Background(), fs.agentID)
		return err == nil && a.CapabilitiesJSON != nil && th.hub.Connected(fs.agentID) && px.linksOpened() == 1
	})
	return fs
}

// checkExactlyOnce waits for the task's result to be applied, completed and acknowledged on the
// agent, then checks one execution and one applied result.
func (fs *faultSetup) checkExactlyOnce(t *testing.T, taskID, wantStatus string) {
	t.Helper()
	waitFor(t, "result applied and task completed", func() bool {
		_, _, ok := fs.hub.sink.result(taskID)
		return ok && fs.hub.task(t, taskID).CompletedAt != nil
	})
	waitFor(t, "result acknowledged on the agent", func() bool { return resultAckedOnAgent(fs.dataDir, taskID) })
	res, calls, _ := fs.hub.sink.result(taskID)
	if n := executions(t, fs.markers, taskID); n != 1 {
		t.Errorf("task executed %d times, want 1", n)
	}
	if calls != 1 {
		t.Errorf("result applied %d times, want 1", calls)
	}
	if res.Status != wantStatus {
		t.Errorf("result status %q (error %v), want %q", res.Status, res.Error, wantStatus)
	}
	tk := fs.hub.task(t, taskID)
	if tk.Status != storage.AgentTaskCompleted || tk.ResultJSON == nil {
		t.Errorf("task row %+v, want completed with its result", tk)
	}
}

type step struct {
	name string
	arm  *armedFault // nil: fault every link before the send
}

var steps = []step{
	{"BeforeSend", nil},
	{"AfterSendBeforeAck", &armedFault{dir: toHub, typ: protocol.TypeAck}},
	{"DuringRun", &armedFault{dir: toHub, typ: protocol.TypeRunEvent, kind: "start"}},
	{"AfterResultBeforeAck", &armedFault{dir: toAgent, typ: protocol.TypeTaskResultAck}},
}

// TestFaultMatrix drops, stalls and black-holes the agent's connection at each step of a task's
// life; every task runs once and its result is recorded once.
func TestFaultMatrix(t *testing.T) {
	t.Parallel()
	for _, st := range steps {
		for _, fk := range []faultKind{faultDrop, faultStall, faultBlackhole} {
			t.Run(st.name+"/"+string(fk), func(t *testing.T) {
				t.Parallel()
				fs := newFaultSetup(t)
				const task = "task-1"
				if st.arm == nil {
					fs.proxy.faultAll(fk)
				} else {
					a := *st.arm
					a.fault = fk
					fs.proxy.arm(a)
				}
				fs.hub.dispatch(t, fs.agentID, task)
				waitFor(t, "execution started", func() bool { return executions(t, fs.markers, task) > 0 })
				if st.name != "AfterResultBeforeAck" {
					// Let the fault play out and the agent come back before the task finishes.
					waitFor(t, "agent reconnected", func() bool {
						return fs.proxy.linksOpened() >= 2 && fs.hub.hub.Connected(fs.agentID)
					})
				}
				release(t, fs.markers, task)
				if st.name == "AfterResultBeforeAck" {
					<-fs.proxy.fired
					waitFor(t, "agent reconnected", func() bool { return fs.proxy.linksOpened() >= 2 })
				}
				fs.checkExactlyOnce(t, task, protocol.StatusSuccess)
				if evs := fs.hub.sink.eventsOf(task); len(evs) == 0 || evs[len(evs)-1] != "complete:done" {
					t.Errorf("events %v: the run's last event should reach the Hub", evs)
				}
			})
		}
	}
}

// TestKillAgentMidRun: the agent dies (kill -9) during a run and starts again. The task is not
// run again; the Hub learns it was interrupted and the run does not hang.
func TestKillAgentMidRun(t *testing.T) {
	t.Parallel()
	fs := newFaultSetup(t)
	const task = "task-kill"
	fs.hub.dispatch(t, fs.agentID, task)
	waitFor(t, "execution started", func() bool { return executions(t, fs.markers, task) > 0 })
	waitFor(t, "ack recorded", func() bool { return fs.hub.task(t, task).AckedAt != nil })
	fs.child.kill9()
	release(t, fs.markers, task) // a second execution would finish at once
	fs.child = startChild(t, fs.proxy.url(), "", fs.dataDir, fs.markers)
	fs.checkExactlyOnce(t, task, protocol.StatusFailed)
	res, _, _ := fs.hub.sink.result(task)
	if !bytes.Contains(res.Summary, []byte(client.InterruptedCode)) {
		t.Errorf("summary %s, want error_code %s", res.Summary, client.InterruptedCode)
	}
}

// TestRestartHubMidRun: the Hub goes away during a run and a new Hub process on the same
// database takes over; the running task keeps running and its result reaches the new Hub once.
func TestRestartHubMidRun(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bastion.db")
	db1 := openDBAt(t, path)
	sink := newSink()
	th1 := newTestHub(t, hubOpts{ackTimeout: time.Second, db: db1, sink: sink})
	px := newFaultProxy(t, th1.srv.Listener.Addr().String())
	dataDir, markers := t.TempDir(), t.TempDir()
	ch := startChild(t, px.url(), newEnrollToken(t, db1, nil), dataDir, markers)
	id := ch.agentID()
	waitFor(t, "agent connected", func() bool { return th1.hub.Connected(id) })
	const task = "task-hub-restart"
	th1.dispatch(t, id, task)
	waitFor(t, "execution started", func() bool { return executions(t, markers, task) > 0 })

	th1.stop()
	db1.Close()
	db2 := openDBAt(t, path)
	th2 := newTestHub(t, hubOpts{ackTimeout: time.Second, db: db2, sink: sink})
	px.setUpstream(th2.srv.Listener.Addr().String())
	px.faultAll(faultDrop) // connections to the old Hub are gone with it
	waitFor(t, "agent connected to the new hub", func() bool { return th2.hub.Connected(id) })
	release(t, markers, task)
	fs := &faultSetup{hub: th2, proxy: px, child: ch, agentID: id, markers: markers, dataDir: dataDir}
	fs.checkExactlyOnce(t, task, protocol.StatusSuccess)
}

// TestDuplicateDeliveryAtOnce: the same task arrives twice back to back; it runs once.
func TestDuplicateDeliveryAtOnce(t *testing.T) {
	t.Parallel()
	fs := newFaultSetup(t)
	const task = "task-dup"
	fs.proxy.duplicate(protocol.TypeTask)
	fs.hub.dispatch(t, fs.agentID, task)
	waitFor(t, "execution started", func() bool { return executions(t, fs.markers, task) > 0 })
	release(t, fs.markers, task)
	fs.checkExactlyOnce(t, task, protocol.StatusSuccess)
}

// TestCancelSurvivesReconnect: a cancel requested while the agent is cut off reaches it after
// the reconnect (re-sent task, then cancel), and the run ends canceled, once.
func TestCancelSurvivesReconnect(t *testing.T) {
	t.Parallel()
	fs := newFaultSetup(t)
	const task = "task-cancel"
	fs.hub.dispatch(t, fs.agentID, task)
	waitFor(t, "execution started", func() bool { return executions(t, fs.markers, task) > 0 })
	fs.proxy.faultAll(faultBlackhole)
	if err := fs.hub.hub.CancelTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	fs.checkExactlyOnce(t, task, protocol.StatusCanceled)
}

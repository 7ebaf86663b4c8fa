// Package client is the agent process (`bastion agent`): it enrolls once, keeps a WebSocket to
// the Hub with heartbeats and jittered reconnects, and runs the tasks the Hub sends exactly once,
// recording each accepted task on disk before acknowledging it and keeping each result until the
// Hub acknowledges it.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/names"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/scratch"
)

// Executor runs one backup task. It returns the terminal result (TaskID and RunID are filled in
// by the caller) and reports progress through emit. It must return promptly once ctx ends
// (cancel), with status canceled.
type Executor interface {
	Execute(ctx context.Context, t *protocol.Task, emit func(*protocol.RunEvent)) protocol.TaskResult
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, t *protocol.Task, emit func(*protocol.RunEvent)) protocol.TaskResult

func (f ExecutorFunc) Execute(ctx context.Context, t *protocol.Task, emit func(*protocol.RunEvent)) protocol.TaskResult {
	return f(ctx, t, emit)
}

// Restorer runs one restore task (restore_task). It returns the terminal result (OpID is filled
// in by the caller) and reports events and progress through emit. It must return promptly once
// ctx ends (cancel), with status canceled.
type Restorer interface {
	Restore(ctx context.Context, t *protocol.RestoreTask, emit func(*protocol.OperationEvent)) protocol.OperationResult
}

// Verifier runs one verify task (verify_task), reporting like a Restorer.
type Verifier interface {
	Verify(ctx context.Context, t *protocol.VerifyTask, emit func(*protocol.OperationEvent)) protocol.OperationResult
}

// EntriesLister answers entries_list: one page of a snapshot's entries index. Failures go in the
// result (error_code, error_kind, error).
type EntriesLister interface {
	Entries(ctx context.Context, m *protocol.EntriesList) *protocol.EntriesListResult
}

// Options configure the agent.
type Options struct {
	HubURL      string
	EnrollToken string
	Name        string
	DataDir     string
	// Heartbeat is the ping interval (default 15 s); no pong for 3 intervals means the link is dead.
	Heartbeat time.Duration
	Version   string
	Clock     clock.Clock
	Logger    zerolog.Logger
	Executor  Executor
	// Restorer runs restores; nil fails every restore task with "unsupported".
	Restorer Restorer
	// Verifier runs verifies; nil fails every verify task with "unsupported".
	Verifier Verifier
	// Entries lists snapshots' entries for the Hub's restore picker; nil answers "unsupported".
	Entries EntriesLister
	// Backoff defaults to decorrelated jitter from 1 s to 30 s (see Backoff).
	Backoff    *Backoff
	HTTPClient *http.Client
	// Managed receives config and secrets snapshots (OpenManaged); nil ignores them.
	Managed *Managed
	// OutboxSize bounds queued frames per connection (default 4096: room for the event logs re-sent
	// on connect).
	OutboxSize int
}

func (o *Options) httpClient() *http.Client {
	if o.HTTPClient != nil {
		return o.HTTPClient
	}
	return http.DefaultClient
}

// Fatal errors end Run: the agent cannot go on without an operator.
var (
	ErrRevoked    = errors.New("this agent was revoked by the Hub; enroll it again with a new token to bring it back")
	ErrUnknownKey = errors.New("the Hub does not recognise this agent's key (was it rotated? put the new key in agent.json)")
	ErrKeyRotated = errors.New("the Hub rotated this agent's key; put the new key in agent.json and restart the agent")
)

// HubDatabaseFile is the Hub's database in its data directory; an agent refuses a data directory
// that holds one.
const HubDatabaseFile = "bastion.db"

// maxLogged bounds the events kept per task for re-sending; progress snapshots are coalesced.
const maxLogged = 1000

// Agent is a running agent.
type Agent struct {
	o     Options
	id    *Identity
	store *taskStore
	clock clock.Clock
	log   zerolog.Logger
	exec  Executor
	rest  Restorer
	ver   Verifier
	ents  EntriesLister
	// control is hello.capabilities.control.
	control []string
	lock    chan struct{} // the run lock: one task at a time

	mu            sync.Mutex
	sess          *session
	running       map[string]*runningTask
	pendingCancel map[string]struct{}
	logs          map[string]*eventLog // task id → events kept until its result is acknowledged
	logOrder      []string
	offlineBusy   map[string]bool // job id → an offline run of it is going
	offlineWG     sync.WaitGroup
	schedWake     chan struct{}
	taskEnded     chan struct{} // cap 1: a task left running (waitTasks)
}

type eventLog struct {
	seq    int64
	events []loggedEvent
}

// loggedEvent is a numbered run_event or operation_event kept for re-sending.
type loggedEvent struct {
	progress bool
	msg      protocol.Message
}

const progressKind = "progress_snapshot"

type runningTask struct {
	cancel context.CancelFunc
}

// Run enrolls if needed, then serves the Hub until ctx ends (nil) or a fatal error.
func Run(ctx context.Context, o Options) error {
	a, err := New(ctx, o)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// New validates the options, loads or creates the identity and opens the task store.
func New(ctx context.Context, o Options) (*Agent, error) {
	if o.HubURL == "" {
		return nil, fmt.Errorf("--hub-url is required")
	}
	if _, err := protocol.WebSocketURL(o.HubURL); err != nil {
		return nil, fmt.Errorf("--hub-url: %w", err)
	}
	if o.DataDir == "" {
		return nil, fmt.Errorf("--data-dir is required")
	}
	// The agent empties runs/ and operations/ of its data directory at start: in a Hub's data
	// directory that would destroy the Hub's running backups and restores.
	if _, err := os.Stat(filepath.Join(o.DataDir, HubDatabaseFile)); err == nil {
		return nil, fmt.Errorf("--data-dir %s is a Hub's data directory (it holds %s); give the agent a directory of its own", o.DataDir, HubDatabaseFile)
	}
	if o.Heartbeat < 0 {
		return nil, fmt.Errorf("--heartbeat-seconds must be positive")
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 15 * time.Second
	}
	// Three intervals are the pong timeout: an unbounded interval overflows time.Duration.
	o.Heartbeat = protocol.ClampHeartbeat(o.Heartbeat)
	// The Hub refuses a name that is not a valid display name (at enrollment and in every hello):
	// say so now rather than after a round trip, or forever on each reconnect.
	if strings.TrimSpace(o.Name) != "" {
		n, err := names.Display(o.Name)
		if err != nil {
			return nil, fmt.Errorf("--name: %w", err)
		}
		o.Name = n
	} else {
		o.Name = ""
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Backoff == nil {
		o.Backoff = &Backoff{Base: BackoffBase, Cap: BackoffCap}
	}
	if o.OutboxSize <= 0 {
		o.OutboxSize = 4096
	}
	if o.Executor == nil {
		o.Executor = unsupportedExecutor{}
	}
	if o.Restorer == nil {
		o.Restorer = unsupportedRestorer{}
	}
	// hello lists only the extensions this agent serves; the Hub sends no others.
	control := []string{"fs_list", "webdav_list"}
	if o.Entries != nil {
		control = append(control, protocol.ControlEntriesList)
	} else {
		o.Entries = unsupportedEntries{}
	}
	if o.Verifier != nil {
		control = append(control, protocol.ControlVerify)
	} else {
		o.Verifier = unsupportedVerifier{}
	}
	log := o.Logger.With().Str("component", "agent").Logger()
	id, err := ensureIdentity(ctx, &o)
	if err != nil {
		return nil, err
	}
	if o.Managed != nil {
		if err := o.Managed.bind(id.AgentID); err != nil {
			return nil, err
		}
	}
	store, interrupted, err := openTaskStore(filepath.Join(o.DataDir, "agent", "tasks"), o.Clock.Now)
	if err != nil {
		return nil, err
	}
	for _, t := range interrupted {
		log.Warn().Str("task_id", t).Msg("task was running when the agent stopped; reporting it failed instead of running it again")
	}
	// Nothing runs yet: scratch space that backups and restores left behind when the agent died is
	// of no use to anyone.
	for _, sub := range []string{"runs", "operations"} {
		if err := scratch.Empty(filepath.Join(o.DataDir, sub)); err != nil {
			log.Warn().Err(err).Str("dir", sub).Msg("remove scratch directories of interrupted tasks")
		}
	}
	// The agent cannot ask which snapshots still exist: indexes the restore picker has not read
	// for a while go. (Compared with file times, so with the wall clock.)
	if err := operations.NewIndexCache(entriesCacheDir(o.DataDir), 0).PruneUnused(time.Now().Add(-entriesCacheTTL)); err != nil {
		log.Warn().Err(err).Msg("prune the entries cache")
	}
	a := &Agent{
		o: o, id: id, store: store, clock: o.Clock, log: log.With().Str("agent_id", id.AgentID).Logger(), exec: o.Executor,
		rest: o.Restorer, ver: o.Verifier, ents: o.Entries, control: control,
		lock:          make(chan struct{}, 1),
		running:       map[string]*runningTask{},
		pendingCancel: map[string]struct{}{},
		logs:          map[string]*eventLog{},
		offlineBusy:   map[string]bool{},
		schedWake:     make(chan struct{}, 1),
		taskEnded:     make(chan struct{}, 1),
	}
	return a, nil
}

// ID is the agent id.
func (a *Agent) ID() string { return a.id.AgentID }

// Run keeps a connection to the Hub until ctx ends or the Hub refuses the agent for good.
// Reconnects back off exponentially with jitter; a connection that stayed healthy for a minute
// resets the backoff.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info().Str("hub", redactURL(a.id.HubURL)).Dur("heartbeat", a.o.Heartbeat).Msg("agent starting")
	schedCtx, stopSched := context.WithCancel(ctx)
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		a.offlineScheduler(schedCtx)
	}()
	defer func() {
		stopSched()
		<-schedDone
		a.offlineWG.Wait()
	}()
	for {
		up, err := a.connectAndServe(ctx)
		if ctx.Err() != nil {
			a.waitTasks()
			return nil
		}
		if errors.Is(err, ErrRevoked) || errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrKeyRotated) {
			a.log.Error().Err(err).Msg("agent stopping")
			return err
		}
		if up >= BackoffResetAfter {
			a.o.Backoff.Reset()
		}
		d := a.o.Backoff.Next()
		a.log.Info().Err(err).Dur("retry_in", d).Msg("disconnected from the hub")
		t := a.clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			a.waitTasks()
			return nil
		case <-t.C():
		}
	}
}

// stopGrace bounds how long a stopping agent waits for its running tasks.
const stopGrace = 10 * time.Second

// waitTasks gives running tasks up to stopGrace to finish and record their result before the
// agent stops; one still running then is reported interrupted after the next start. It wakes
// when a task ends (taskEnded), never by polling.
func (a *Agent) waitTasks() {
	t := a.clock.NewTimer(stopGrace)
	defer t.Stop()
	for {
		a.mu.Lock()
		n := len(a.running)
		a.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-a.taskEnded:
		case <-t.C():
			a.log.Warn().Int("tasks", n).Msg("stopping with tasks still running; they are reported interrupted at the next start")
			return
		}
	}
}

// endTaskLocked forgets a running task and wakes waitTasks. Callers hold a.mu.
func (a *Agent) endTaskLocked(id string) {
	delete(a.running, id)
	select {
	case a.taskEnded <- struct{}{}:
	default:
	}
}

func (a *Agent) hello() *protocol.Hello {
	hb := a.o.Heartbeat.Seconds()
	// A name saved by an older agent (or edited into agent.json) that the Hub would refuse is
	// left out: the agent still connects, shown by its id.
	var name *string
	if n, err := names.Display(a.id.Name); err == nil {
		name = &n
	}
	return &protocol.Hello{
		AgentID: a.id.AgentID, Name: name,
		Info: protocol.AgentInfo{Version: a.o.Version, OS: runtime.GOOS, Arch: runtime.GOARCH},
		Capabilities: protocol.Capabilities{
			Backup:  []string{"filesystem", "sqlite"},
			Control: a.control,
		},
		HeartbeatSeconds: &hb,
		StageEvents:      true, // the backup pipeline logs its own stages (engine/backup)
	}
}

// onTask accepts a task exactly once. A task already known (running, finished, or interrupted by
// a restart) is answered with its current state: an ACK, plus the result when there is one.
func (a *Agent) onTask(s *session, m *protocol.Task) {
	id := m.TaskID
	log := a.log.With().Str("task_id", id).Logger()
	a.mu.Lock()
	if _, ok := a.running[id]; ok {
		a.mu.Unlock()
		// Its events already go to whichever connection is current.
		log.Info().Msg("task re-delivered while running; acknowledged, not run again")
		_ = s.send(&protocol.Ack{TaskID: id})
		return
	}
	ctx, cancel, ok := a.acceptLocked(s, id, m.Task.RunID, kindBackup, log)
	if !ok {
		return
	}
	if m.Task.RunID != id {
		if _, ok := a.pendingCancel[m.Task.RunID]; ok {
			delete(a.pendingCancel, m.Task.RunID)
			cancel()
		}
	}
	a.mu.Unlock()
	_ = s.send(&protocol.Ack{TaskID: id})
	go a.execute(ctx, cancel, m)
}

// acceptLocked is the common part of accepting a task, called with a.mu held. A task already
// finished is answered with its state (ACK and result) and ok is false; so is one that could not
// be recorded (no ACK: the Hub sends it again). Otherwise the task is recorded on disk, registered
// as running with a pending cancel applied, and a.mu is still held.
func (a *Agent) acceptLocked(s *session, id, runID, kind string, log zerolog.Logger) (context.Context, context.CancelFunc, bool) {
	if rec, ok := a.store.get(id); ok {
		a.mu.Unlock()
		log.Info().Bool("has_result", rec.hasResult()).Msg("task re-delivered after it ran; answering with its state, not running it again")
		_ = s.send(&protocol.Ack{TaskID: id})
		if m := rec.resultMessage(); m != nil {
			_ = s.send(m)
		}
		return nil, nil, false
	}
	if err := a.store.accept(id, runID, kind); err != nil {
		a.mu.Unlock()
		// No ACK: the Hub re-sends it after its ACK timeout or on the next connection.
		log.Error().Err(err).Msg("could not record the task; not acknowledging it")
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.running[id] = &runningTask{cancel: cancel}
	if _, ok := a.pendingCancel[id]; ok {
		delete(a.pendingCancel, id)
		cancel()
	}
	return ctx, cancel, true
}

// onRestoreTask accepts a restore exactly once, like onTask: the operation id is recorded on
// disk before the ACK, and a re-delivered restore is answered with its state, never run again.
func (a *Agent) onRestoreTask(s *session, m *protocol.RestoreTask) {
	id := m.TaskID
	if id == "" {
		id = m.Task.OpID
	}
	a.onOperationTask(s, id, m.Task.RunID, kindRestore, func(ctx context.Context, emit func(*protocol.OperationEvent)) protocol.OperationResult {
		return a.rest.Restore(ctx, m, emit)
	})
}

// onVerifyTask accepts a verify exactly once, like a restore.
func (a *Agent) onVerifyTask(s *session, m *protocol.VerifyTask) {
	id := m.TaskID
	if id == "" {
		id = m.Task.OpID
	}
	a.onOperationTask(s, id, m.Task.RunID, kindVerify, func(ctx context.Context, emit func(*protocol.OperationEvent)) protocol.OperationResult {
		return a.ver.Verify(ctx, m, emit)
	})
}

// onOperationTask accepts an operation task (restore, verify) exactly once and runs it under the
// run lock; it reports with operation_event and operation_result.
func (a *Agent) onOperationTask(s *session, id, runID, kind string, run func(context.Context, func(*protocol.OperationEvent)) protocol.OperationResult) {
	log := a.log.With().Str("operation_id", id).Str("run_id", runID).Str("kind", kind).Logger()
	a.mu.Lock()
	if _, ok := a.running[id]; ok {
		a.mu.Unlock()
		log.Info().Msg("operation re-delivered while running; acknowledged, not run again")
		_ = s.send(&protocol.Ack{TaskID: id})
		return
	}
	ctx, cancel, ok := a.acceptLocked(s, id, runID, kind, log)
	if !ok {
		return
	}
	a.mu.Unlock()
	_ = s.send(&protocol.Ack{TaskID: id})
	go a.executeOp(ctx, cancel, id, log, run)
}

func (a *Agent) executeOp(ctx context.Context, cancel context.CancelFunc, id string, log zerolog.Logger,
	run func(context.Context, func(*protocol.OperationEvent)) protocol.OperationResult) {
	defer cancel()
	emit := func(ev *protocol.OperationEvent) {
		ev.OpID = id
		a.emitOp(ev)
	}
	var res protocol.OperationResult
	select {
	case a.lock <- struct{}{}:
		if ctx.Err() != nil {
			res = canceledOpResult()
		} else {
			log.Info().Msg("operation started")
			res = run(ctx, emit)
		}
		<-a.lock
	case <-ctx.Done():
		res = canceledOpResult()
	}
	res.OpID = id
	if res.Status == "" {
		res.Status = protocol.StatusFailed
	}
	if err := a.store.finishOp(id, res); err != nil {
		log.Error().Err(err).Msg("could not record the operation result")
	}
	a.mu.Lock()
	a.endTaskLocked(id)
	s := a.sess
	a.mu.Unlock()
	log.Info().Str("status", res.Status).Msg("operation finished")
	if s != nil {
		_ = s.send(&protocol.OperationResultMsg{Result: res})
	}
}

func canceledOpResult() protocol.OperationResult {
	msg := "canceled"
	return protocol.OperationResult{Status: protocol.StatusCanceled, Error: &msg}
}

func (a *Agent) execute(ctx context.Context, cancel context.CancelFunc, m *protocol.Task) {
	defer cancel()
	id := m.TaskID
	log := a.log.With().Str("task_id", id).Str("run_id", m.Task.RunID).Logger()
	var res protocol.TaskResult
	select {
	case a.lock <- struct{}{}:
		if ctx.Err() != nil {
			res = canceledResult()
		} else {
			log.Info().Msg("task started")
			res = a.exec.Execute(ctx, m, a.emit)
		}
		<-a.lock
	case <-ctx.Done():
		res = canceledResult()
	}
	res.TaskID, res.RunID = id, m.Task.RunID
	if res.Status == "" {
		res.Status = protocol.StatusFailed
	}
	if err := a.store.finish(id, res); err != nil {
		// Kept in memory only: sent now, and lost on a restart, where the task is reported interrupted.
		log.Error().Err(err).Msg("could not record the task result")
	}
	a.mu.Lock()
	a.endTaskLocked(id)
	s := a.sess
	a.mu.Unlock()
	log.Info().Str("status", res.Status).Msg("task finished")
	if s != nil {
		_ = s.send(&res) // re-sent on every connection until the Hub acknowledges it
	}
}

func canceledResult() protocol.TaskResult {
	msg := "canceled"
	return protocol.TaskResult{Status: protocol.StatusCanceled, Error: &msg}
}

// cancelTask cancels a running task, or remembers the cancel for a task not yet received: a
// cancel may overtake the re-sent task it cancels.
func (a *Agent) cancelTask(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rt, ok := a.running[id]; ok {
		rt.cancel()
		return
	}
	if _, ok := a.store.get(id); ok {
		return // finished already
	}
	if len(a.pendingCancel) < 10000 {
		a.pendingCancel[id] = struct{}{}
	}
}

// emit numbers a run event, keeps it in its task's log and sends it on the current connection.
// The log is re-sent after every reconnect until the task's result is acknowledged (an event
// written into a connection that then died may never have arrived); the Hub applies each number
// once.
func (a *Agent) emit(ev *protocol.RunEvent) {
	a.logEvent(ev.RunID, ev.Kind == progressKind, func(seq int64) protocol.Message {
		ev.Seq = &seq
		return ev
	})
}

// emitOp does the same for a restore's operation events.
func (a *Agent) emitOp(ev *protocol.OperationEvent) {
	a.logEvent(ev.OpID, ev.Kind == progressKind, func(seq int64) protocol.Message {
		ev.Seq = &seq
		return &protocol.OperationEventMsg{Event: *ev}
	})
}

func (a *Agent) logEvent(taskID string, progress bool, number func(seq int64) protocol.Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.logs[taskID]
	if l == nil {
		l = &eventLog{}
		a.logs[taskID] = l
		a.logOrder = append(a.logOrder, taskID)
	}
	l.seq++
	ev := loggedEvent{progress: progress, msg: number(l.seq)}
	n := len(l.events)
	switch {
	case progress && n > 0 && l.events[n-1].progress:
		l.events[n-1] = ev // only the latest progress matters
	case n >= maxLogged:
		copy(l.events, l.events[1:])
		l.events[n-1] = ev
	default:
		l.events = append(l.events, ev)
	}
	if a.sess != nil {
		_ = a.sess.send(ev.msg) // on failure the connection ends and the log is re-sent on the next
	}
}

// resendLogsLocked sends every kept event, oldest task first. Callers hold a.mu.
func (a *Agent) resendLogsLocked(s *session) {
	for _, id := range a.logOrder {
		for _, ev := range a.logs[id].events {
			if s.send(ev.msg) != nil {
				return
			}
		}
	}
}

func (a *Agent) onResultAck(id string) {
	a.mu.Lock()
	if _, ok := a.logs[id]; ok {
		delete(a.logs, id)
		for i, x := range a.logOrder {
			if x == id {
				a.logOrder = append(a.logOrder[:i], a.logOrder[i+1:]...)
				break
			}
		}
	}
	a.mu.Unlock()
	if err := a.store.ackResult(id); err != nil {
		a.log.Warn().Err(err).Str("task_id", id).Msg("record result acknowledgement")
	}
}

type unsupportedRestorer struct{}

func (unsupportedRestorer) Restore(context.Context, *protocol.RestoreTask, func(*protocol.OperationEvent)) protocol.OperationResult {
	msg := "this agent cannot run restores"
	return protocol.OperationResult{Status: protocol.StatusFailed, Error: &msg, Summary: json.RawMessage(`{"error_code":"unsupported"}`)}
}

type unsupportedVerifier struct{}

func (unsupportedVerifier) Verify(context.Context, *protocol.VerifyTask, func(*protocol.OperationEvent)) protocol.OperationResult {
	msg := "this agent cannot run verifies"
	return protocol.OperationResult{Status: protocol.StatusFailed, Error: &msg, Summary: json.RawMessage(`{"error_code":"unsupported"}`)}
}

type unsupportedEntries struct{}

func (unsupportedEntries) Entries(_ context.Context, m *protocol.EntriesList) *protocol.EntriesListResult {
	code, msg := protocol.EntriesUnsupported, "this agent cannot list snapshot entries"
	return &protocol.EntriesListResult{RequestID: m.RequestID, Entries: []protocol.EntryChild{}, ErrorCode: &code, Error: &msg}
}

type unsupportedExecutor struct{}

func (unsupportedExecutor) Execute(context.Context, *protocol.Task, func(*protocol.RunEvent)) protocol.TaskResult {
	msg := "this agent cannot run backups"
	return protocol.TaskResult{Status: protocol.StatusFailed, Error: &msg, Summary: json.RawMessage(`{"error_code":"unsupported"}`)}
}

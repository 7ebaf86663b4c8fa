package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/jobgate"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

const validSpec = `{"v":1,"type":"filesystem","source":{"paths":["/srv/app"]},"target":{"type":"local_dir","base_dir":"/srv/bk"}}`

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeExec hands every execution to the test, which answers it.
type fakeExec struct {
	calls chan *execCall
	// stopOnCancel ends an unanswered execution when its context ends, so that a test that
	// fails while an execution it did not expect waits for an answer still shuts down.
	stopOnCancel bool
	replied      atomic.Int64
}

type execCall struct {
	f      *fakeExec
	ctx    context.Context
	req    ExecRequest
	answer chan execAnswer
}

type execAnswer struct {
	out Outcome
	err error
}

func (f *fakeExec) Execute(ctx context.Context, req ExecRequest) (Outcome, error) {
	c := &execCall{f: f, ctx: ctx, req: req, answer: make(chan execAnswer, 1)}
	f.calls <- c
	if f.stopOnCancel {
		select {
		case a := <-c.answer:
			return a.out, a.err
		case <-ctx.Done():
			return Outcome{}, ctx.Err()
		}
	}
	a := <-c.answer
	return a.out, a.err
}

func (c *execCall) reply(out Outcome, err error) {
	c.f.replied.Add(1)
	c.answer <- execAnswer{out, err}
}

// passLog records the dispatcher's passes (Service.hookPass).
type passLog struct {
	mu      sync.Mutex
	reports []passReport
	added   chan struct{} // cap 1: a report was added
}

func (p *passLog) add(r passReport) {
	p.mu.Lock()
	p.reports = append(p.reports, r)
	p.mu.Unlock()
	select {
	case p.added <- struct{}{}:
	default:
	}
}

func (p *passLog) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.reports)
}

// wait returns report number n (from 0), waiting for it up to a deadline; false when none came.
func (p *passLog) wait(n int) (passReport, bool) {
	deadline := time.After(10 * time.Second)
	for {
		p.mu.Lock()
		if len(p.reports) > n {
			r := p.reports[n]
			p.mu.Unlock()
			return r, true
		}
		p.mu.Unlock()
		select {
		case <-p.added:
		case <-deadline:
			return passReport{}, false
		}
	}
}

// started lists every Hub run the dispatcher has claimed.
func (p *passLog) started() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, r := range p.reports {
		out = append(out, r.started...)
	}
	return out
}

// fakeAgents is an AgentRunner whose agents connect when the test says so. Start behaves like the
// real one: it moves the run to running in one statement.
type fakeAgents struct {
	db        *storage.DB
	mu        sync.Mutex
	connected map[string]bool
	started   chan storage.Run
	canceled  chan string
}

func (a *fakeAgents) Connected(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.connected[id]
}

func (a *fakeAgents) setConnected(id string, v bool) {
	a.mu.Lock()
	a.connected[id] = v
	a.mu.Unlock()
}

func (a *fakeAgents) Start(ctx context.Context, run storage.Run, job storage.Job) (bool, error) {
	if !a.Connected(*job.AgentID) {
		return false, nil
	}
	if _, err := a.db.Writer().Exec(ctx, `UPDATE runs SET status = 'running' WHERE id = ? AND status = 'queued'`, run.ID); err != nil {
		return false, err
	}
	a.started <- run
	return true, nil
}

func (a *fakeAgents) Cancel(ctx context.Context, agentID, runID string) error {
	a.canceled <- runID
	return nil
}

type testBundle struct {
	t        *testing.T
	ctx      context.Context
	db       *storage.DB
	clk      *clock.Fake
	exec     *fakeExec
	agents   *fakeAgents
	svc      *Service
	mu       sync.Mutex
	hooked   []Finished // from OnFinished, in the transaction
	after    chan Finished
	ended    chan endedRun // from Observer
	passes   passLog
	received map[string]bool // runs taken with nextCall; only the test goroutine uses it
	stopLoop func()
	loopDone chan error
}

type endedRun struct {
	jobID, status string
	ran           time.Duration
}

type observerFunc func(jobID, status string, ran time.Duration)

func (f observerFunc) RunEnded(jobID, status string, ran time.Duration) { f(jobID, status, ran) }

type opts struct {
	concurrency  int
	noRun        bool
	hookErr      error
	stopOnCancel bool // see fakeExec
	gate         BackupGate
}

func setup(t *testing.T, o opts) *testBundle {
	t.Helper()
	ctx := context.Background()
	db := storagetest.Open(t)
	b := &testBundle{t: t, ctx: ctx, db: db, clk: clock.NewFake(epoch), exec: &fakeExec{calls: make(chan *execCall, 16), stopOnCancel: o.stopOnCancel},
		after: make(chan Finished, 64), ended: make(chan endedRun, 64), passes: passLog{added: make(chan struct{}, 1)}, received: map[string]bool{}}
	b.agents = &fakeAgents{db: db, connected: map[string]bool{}, started: make(chan storage.Run, 16), canceled: make(chan string, 16)}
	b.svc = New(Config{
		DB: db, Clock: b.clk, Log: zerolog.New(zerolog.NewTestWriter(t)), Concurrency: o.concurrency,
		Executor: b.exec, Agents: b.agents, Gate: o.gate,
		OnFinished: []FinishHook{func(ctx context.Context, q storage.Q, f Finished) error {
			// Proves the hook sees the terminal row inside the transaction.
			r, err := q.GetRun(ctx, f.Run.ID)
			if err != nil {
				return err
			}
			if r.Status != f.Run.Status {
				return fmt.Errorf("hook saw status %s, want %s", r.Status, f.Run.Status)
			}
			if o.hookErr != nil {
				return o.hookErr
			}
			b.mu.Lock()
			b.hooked = append(b.hooked, f)
			b.mu.Unlock()
			return nil
		}},
		AfterFinished: []func(Finished){func(f Finished) { b.after <- f }},
		Observer:      observerFunc(func(jobID, status string, ran time.Duration) { b.ended <- endedRun{jobID, status, ran} }),
	})
	b.svc.hookPass = b.passes.add
	if !o.noRun {
		b.startLoop()
	}
	return b
}

func (b *testBundle) startLoop() {
	ctx, cancel := context.WithCancel(b.ctx)
	b.stopLoop = cancel
	b.loopDone = make(chan error, 1)
	go func() { b.loopDone <- b.svc.Run(ctx) }()
	b.t.Cleanup(func() {
		cancel()
		<-b.loopDone
	})
}

func (b *testBundle) job(id, overlap string, agentID *string) storage.Job {
	b.t.Helper()
	j := storage.Job{ID: id, Name: "job " + id, AgentID: agentID, ScheduleTimezone: "UTC", OverlapPolicy: overlap,
		MissedRunPolicy: "run_once", SpecJSON: validSpec, CreatedAt: epoch.Unix(), UpdatedAt: epoch.Unix()}
	if agentID != nil {
		if _, err := b.db.Writer().Exec(b.ctx, `INSERT OR IGNORE INTO agents(id, key_hash, created_at, updated_at) VALUES (?, randomblob(8), 1, 1)`, *agentID); err != nil {
			b.t.Fatal(err)
		}
	}
	if err := b.db.Writer().InsertJob(b.ctx, j); err != nil {
		b.t.Fatal(err)
	}
	return j
}

func (b *testBundle) trigger(jobID string) storage.Run {
	b.t.Helper()
	r, err := b.svc.Trigger(b.ctx, jobID, SourceManual)
	if err != nil {
		b.t.Fatalf("trigger %s: %v", jobID, err)
	}
	return r
}

func (b *testBundle) nextCall() *execCall {
	b.t.Helper()
	select {
	case c := <-b.exec.calls:
		b.received[c.req.Run.ID] = true
		return c
	case <-time.After(10 * time.Second):
		b.t.Fatal("no execution started")
		return nil
	}
}

// noCall checks that the dispatcher has started no Hub run beyond those the test took with
// nextCall (and those named, which start without reaching the executor). Looking at the
// executor's channel alone proves nothing: the dispatcher may simply not have run yet. So it
// waits for a dispatch pass that began after this call and found every Hub slot free that the
// test does not hold: any run that could start now, that pass would have claimed.
func (b *testBundle) noCall(startedWithoutExecutor ...string) {
	b.t.Helper()
	n := b.passes.count()
	b.svc.Wake()
	_, settled := b.passes.wait(n) // this pass may have begun before the wake ...
	n++
	b.svc.Wake()
	expected := map[string]bool{}
	for _, id := range startedWithoutExecutor {
		expected[id] = true
	}
	check := func() {
		b.t.Helper()
		for _, id := range b.passes.started() {
			if !b.received[id] && !expected[id] {
				b.t.Fatalf("unexpected start of run %s", id)
			}
		}
	}
	for settled { // ... this one did not; a run still winding down wakes the loop when it is done
		check()
		r, ok := b.passes.wait(n)
		n++
		if !ok || r.free == b.svc.conc-len(b.received)+int(b.exec.replied.Load()) {
			settled = ok
			break
		}
	}
	check()
	if !settled {
		b.t.Fatal("no dispatch pass with the expected free Hub slots")
	}
	select {
	case c := <-b.exec.calls:
		b.t.Fatalf("unexpected execution of run %s", c.req.Run.ID)
	default:
	}
}

func (b *testBundle) run(id string) storage.Run {
	b.t.Helper()
	r, err := b.db.Reader().GetRun(b.ctx, id)
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

// waitStatus polls the run until it has status, up to the test deadline.
func (b *testBundle) waitStatus(id, status string) storage.Run {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := b.run(id)
		if r.Status == status {
			return r
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("run %s is %s, want %s", id, r.Status, status)
		}
		time.Sleep(time.Millisecond) // polling the database until a deadline
	}
}

func (b *testBundle) kinds(runID string) []string {
	b.t.Helper()
	evs, err := b.db.Reader().ListRunEvents(b.ctx, runID, 0, 100)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []string
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			b.t.Fatalf("events of %s not numbered 1..n: %+v", runID, evs)
		}
		out = append(out, e.Kind)
	}
	return out
}

func (b *testBundle) event(runID, kind string) storage.RunEvent {
	b.t.Helper()
	evs, _ := b.db.Reader().ListRunEvents(b.ctx, runID, 0, 100)
	for _, e := range evs {
		if e.Kind == kind {
			return e
		}
	}
	b.t.Fatalf("run %s has no %s event", runID, kind)
	return storage.RunEvent{}
}

func (b *testBundle) hookedRuns() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]string{}
	for _, f := range b.hooked {
		out[f.Run.ID] = f.Run.Status
	}
	return out
}

func eq(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// runningAgentRun returns a run of a new agent job, already running.
func (b *testBundle) runningAgentRun() storage.Run {
	b.t.Helper()
	b.job("ag", OverlapQueue, ptr("a1"))
	r := b.trigger("ag")
	if _, err := b.db.Writer().Exec(b.ctx, `UPDATE runs SET status = 'running' WHERE id = ?`, r.ID); err != nil {
		b.t.Fatal(err)
	}
	return r
}

// progressValue is a backup progress document; total 0 leaves the total out.
func progressValue(stage string, done, total int) string {
	tot := ""
	if total > 0 {
		tot = fmt.Sprintf(`,"total":{"files":0,"dirs":0,"bytes":%d}`, total)
	}
	return fmt.Sprintf(`{"v":1,"kind":"backup","stage":%q,"ts":1,"done":{"files":0,"dirs":0,"bytes":%d}%s}`, stage, done, tot)
}

func (b *testBundle) setProgress(runID, v string) {
	b.t.Helper()
	if err := b.svc.SetProgress(b.ctx, runID, []byte(v)); err != nil {
		b.t.Fatal(err)
	}
}

// storedProgress is the run's progress as stored ("" for none).
func (b *testBundle) storedProgress(runID string) string {
	b.t.Helper()
	if p := b.run(runID).ProgressJSON; p != nil {
		return *p
	}
	return ""
}

// waitProgress polls the run until its stored progress is want, up to a deadline.
func (b *testBundle) waitProgress(runID, want string) {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.storedProgress(runID) != want {
		if time.Now().After(deadline) {
			b.t.Fatalf("stored progress = %s, want %s", b.storedProgress(runID), want)
		}
		time.Sleep(time.Millisecond) // polling the database until a deadline
	}
}

func TestRunSucceedsThroughTheExecutor(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.job("j1", OverlapQueue, nil)
	r := b.trigger("j1")
	if r.Status != storage.RunQueued || r.StartedAt != epoch.Unix() {
		t.Fatalf("triggered run = %+v", r)
	}
	c := b.nextCall()
	if c.req.Run.ID != r.ID || c.req.Run.Status != storage.RunRunning || c.req.Spec == nil || c.req.Spec.Target.Config.(*localdir.Config).BaseDir != "/srv/bk" {
		t.Fatalf("exec request = %+v", c.req)
	}
	if got := b.run(r.ID); got.TargetSnapshotJSON == nil ||
		*got.TargetSnapshotJSON != `{"node_id":"hub","target":{"type":"local_dir","base_dir":"/srv/bk"}}` {
		t.Fatalf("target snapshot = %v", got.TargetSnapshotJSON)
	}
	if err := c.req.Events.Append(c.ctx, Event{Kind: "scan", Message: "scanning", Fields: map[string]int{"files": 3}}); err != nil {
		t.Fatal(err)
	}
	c.reply(Outcome{Status: storage.RunSuccess, Summary: json.RawMessage(`{"parts":1}`),
		Artifact: &Artifact{NodeID: "hub", TargetType: "local_dir", Format: "archive_v1"}}, nil)
	got := b.waitStatus(r.ID, storage.RunSuccess)
	if got.EndedAt == nil || *got.SummaryJSON != `{"parts":1}` || got.Error != nil {
		t.Fatalf("finished run = %+v", got)
	}
	if k := b.kinds(r.ID); !eq(k, []string{"queued", "start", "scan", "complete"}) {
		t.Fatalf("events = %v", k)
	}
	if ev := b.event(r.ID, "queued"); ev.FieldsJSON == nil || *ev.FieldsJSON != `{"source":"manual"}` {
		t.Fatalf("queued event fields = %v", ev.FieldsJSON)
	}
	f := <-b.after
	if f.Run.ID != r.ID || f.Outcome.Artifact == nil || f.Job.ID != "j1" {
		t.Fatalf("after-finish hook got %+v", f)
	}
	if h := b.hookedRuns(); h[r.ID] != storage.RunSuccess {
		t.Fatalf("finish hook saw %v", h)
	}
}

func TestFailedRunCarriesTheErrorEnvelope(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.job("j1", OverlapQueue, nil)
	r1 := b.trigger("j1")
	b.nextCall().reply(Outcome{Status: storage.RunFailed, Error: &RunError{Code: "target_unreachable", Kind: "network",
		Hint: "check the URL", Message: "connection refused", Retriable: true, Protocol: "webdav"}}, nil)
	got := b.waitStatus(r1.ID, storage.RunFailed)
	if *got.Error != "target_unreachable" {
		t.Fatalf("error = %s", *got.Error)
	}
	ev := b.event(r1.ID, "failed")
	var fields struct {
		ErrorKind string `json:"error_kind"`
		Hint      string `json:"hint"`
		Envelope  struct {
			SchemaVersion int    `json:"schema_version"`
			Code          string `json:"code"`
			Retriable     bool   `json:"retriable"`
			Transport     struct {
				Protocol string `json:"protocol"`
			} `json:"transport"`
		} `json:"error_envelope"`
	}
	if err := json.Unmarshal([]byte(*ev.FieldsJSON), &fields); err != nil {
		t.Fatal(err)
	}
	if ev.Level != LevelError || ev.Message != "connection refused" || fields.ErrorKind != "network" || fields.Hint != "check the URL" ||
		fields.Envelope.SchemaVersion != 1 || fields.Envelope.Code != "target_unreachable" || !fields.Envelope.Retriable ||
		fields.Envelope.Transport.Protocol != "webdav" {
		t.Fatalf("failed event = %+v %s", ev, *ev.FieldsJSON)
	}
	<-b.after

	// A plain error from the executor is a run_failed.
	r2 := b.trigger("j1")
	b.nextCall().reply(Outcome{}, errors.New("disk on fire"))
	got = b.waitStatus(r2.ID, storage.RunFailed)
	if *got.Error != CodeRunFailed || b.event(r2.ID, "failed").Message != "disk on fire" {
		t.Fatalf("run of an executor error = %+v", got)
	}
}

func TestInvalidSpecFailsWithoutExecuting(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	j := b.job("j1", OverlapQueue, nil)
	if _, err := b.db.Writer().Exec(b.ctx, `UPDATE jobs SET spec_json = '{"v":1,"type":"filesystem","source":{"paths":[]},"target":{"type":"local_dir","base_dir":"/x"}}' WHERE id = ?`, j.ID); err != nil {
		t.Fatal(err)
	}
	r := b.trigger("j1")
	got := b.waitStatus(r.ID, storage.RunFailed)
	if *got.Error != CodeInvalidSpec {
		t.Fatalf("error = %v", *got.Error)
	}
	if k := b.kinds(r.ID); !eq(k, []string{"queued", "start", "invalid_spec", "failed"}) {
		t.Fatalf("events = %v", k)
	}
	b.noCall(r.ID)
}

func TestConcurrencyIsBoundedAndAJobNeverRunsTwice(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{concurrency: 2})
	for _, id := range []string{"a", "b", "c"} {
		b.job(id, OverlapQueue, nil)
	}
	a1 := b.trigger("a")
	a2 := b.trigger("a")
	b.clk.Advance(time.Second) // distinct enqueue times keep the order explicit
	bRun := b.trigger("b")
	b.clk.Advance(time.Second)
	cRun := b.trigger("c")

	first, second := b.nextCall(), b.nextCall()
	got := map[string]bool{first.req.Run.ID: true, second.req.Run.ID: true}
	if !got[a1.ID] || !got[bRun.ID] {
		t.Fatalf("first two executions = %v, want a1 and b (a2 waits for a1, c for a slot)", got)
	}
	if r := b.run(a2.ID); r.Status != storage.RunQueued {
		t.Fatalf("a2 = %s while a1 runs", r.Status)
	}
	b.noCall()
	// a1 ends: its slot goes to the oldest startable run, a2.
	calls := map[string]*execCall{first.req.Run.ID: first, second.req.Run.ID: second}
	calls[a1.ID].reply(Outcome{Status: storage.RunSuccess}, nil)
	third := b.nextCall()
	if third.req.Run.ID != a2.ID {
		t.Fatalf("third execution = %s, want a2", third.req.Run.ID)
	}
	calls[bRun.ID].reply(Outcome{Status: storage.RunSuccess}, nil)
	fourth := b.nextCall()
	if fourth.req.Run.ID != cRun.ID {
		t.Fatalf("fourth execution = %s, want c", fourth.req.Run.ID)
	}
	third.reply(Outcome{Status: storage.RunSuccess}, nil)
	fourth.reply(Outcome{Status: storage.RunSuccess}, nil)
	for _, id := range []string{a1.ID, a2.ID, bRun.ID, cRun.ID} {
		b.waitStatus(id, storage.RunSuccess)
	}
}

func TestOverlapPolicies(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.job("rej", OverlapReject, nil)
	b.job("que", OverlapQueue, nil)

	r1 := b.trigger("rej")
	c := b.nextCall()
	r2 := b.trigger("rej")
	if r2.Status != storage.RunRejected || r2.EndedAt == nil || *r2.Error != CodeOverlapRejected {
		t.Fatalf("second run of a reject job = %+v", r2)
	}
	if got := b.run(r2.ID); got.Status != storage.RunRejected || got.EndedAt == nil || *got.Error != CodeOverlapRejected {
		t.Fatalf("stored rejected run = %+v", got)
	}
	if k := b.kinds(r2.ID); !eq(k, []string{"rejected"}) {
		t.Fatalf("rejected run events = %v", k)
	}
	if f := <-b.after; f.Run.ID != r2.ID || f.Outcome.Status != storage.RunRejected {
		t.Fatalf("after hook for rejected = %+v", f)
	}
	if h := b.hookedRuns(); h[r2.ID] != storage.RunRejected {
		t.Fatalf("finish hook did not see the rejected run: %v", h)
	}
	c.reply(Outcome{Status: storage.RunSuccess}, nil)
	b.waitStatus(r1.ID, storage.RunSuccess)
	<-b.after

	// queue: with a run queued (none running: concurrency is busy elsewhere is not needed, the
	// first one is still queued or running) the next trigger queues.
	q1 := b.trigger("que")
	c = b.nextCall()
	q2 := b.trigger("que")
	if q2.Status != storage.RunQueued || q2.Error != nil || q2.EndedAt != nil {
		t.Fatalf("second run of a queue job = %+v", q2)
	}
	c.reply(Outcome{Status: storage.RunSuccess}, nil)
	b.nextCall().reply(Outcome{Status: storage.RunSuccess}, nil)
	b.waitStatus(q1.ID, storage.RunSuccess)
	b.waitStatus(q2.ID, storage.RunSuccess)
}

func TestCancelQueuedRun(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{concurrency: 1, stopOnCancel: true})
	b.job("busy", OverlapQueue, nil)
	b.job("j", OverlapQueue, nil)
	busy := b.trigger("busy")
	c := b.nextCall()
	r := b.trigger("j")
	got, err := b.svc.Cancel(b.ctx, r.ID, ptr(int64(1)), ptr("not now"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != storage.RunCanceled || got.EndedAt == nil || *got.Error != CodeCanceled || *got.CancelReason != "not now" ||
		*got.CancelRequestedByUserID != 1 {
		t.Fatalf("canceled queued run = %+v", got)
	}
	if k := b.kinds(r.ID); !eq(k, []string{"queued", "canceled"}) {
		t.Fatalf("events = %v", k)
	}
	// A repeat changes nothing.
	again, err := b.svc.Cancel(b.ctx, r.ID, nil, ptr("other"))
	if err != nil || *again.CancelReason != "not now" || len(b.kinds(r.ID)) != 2 {
		t.Fatalf("repeat cancel = %+v %v", again, err)
	}
	c.reply(Outcome{Status: storage.RunSuccess}, nil)
	b.waitStatus(busy.ID, storage.RunSuccess)
	<-b.after
	b.noCall()
	if h := b.hookedRuns(); h[r.ID] != "" {
		t.Fatal("finish hook ran for a canceled run")
	}
	if _, err := b.svc.Cancel(b.ctx, "nope", nil, nil); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("cancel of a missing run = %v", err)
	}
}

func TestCancelRunningRunWinsOverALateSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.job("j", OverlapQueue, nil)
	r := b.trigger("j")
	c := b.nextCall()
	got, err := b.svc.Cancel(b.ctx, r.ID, nil, ptr("oops"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != storage.RunRunning || got.CancelRequestedAt == nil {
		t.Fatalf("running run after cancel = %+v, want still running with the request", got)
	}
	<-c.ctx.Done() // the executor is told
	if !errors.Is(context.Cause(c.ctx), errCancelRequested) {
		t.Fatalf("cause = %v", context.Cause(c.ctx))
	}
	c.reply(Outcome{Status: storage.RunSuccess, Summary: json.RawMessage(`{}`)}, nil)
	got = b.waitStatus(r.ID, storage.RunCanceled)
	if got.SummaryJSON != nil || *got.Error != CodeCanceled {
		t.Fatalf("final = %+v", got)
	}
	if k := b.kinds(r.ID); !eq(k, []string{"queued", "start", "cancel_requested", "canceled"}) {
		t.Fatalf("events = %v", k)
	}
	// A late second result is ignored.
	if err := b.svc.Finish(b.ctx, r.ID, Outcome{Status: storage.RunSuccess}); err != nil {
		t.Fatal(err)
	}
	if b.run(r.ID).Status != storage.RunCanceled || len(b.kinds(r.ID)) != 4 {
		t.Fatal("a late result changed a canceled run")
	}
	if h := b.hookedRuns(); h[r.ID] != "" {
		t.Fatal("finish hook ran for a canceled run")
	}
}

func TestFailingHookRollsBackTheFinalWrite(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{noRun: true, hookErr: errors.New("notify table gone")})
	b.job("j", OverlapQueue, nil)
	r := b.trigger("j")
	if err := b.svc.Finish(b.ctx, r.ID, Outcome{Status: storage.RunSuccess}); err == nil {
		t.Fatal("Finish succeeded although its hook failed")
	}
	if got := b.run(r.ID); got.Status != storage.RunQueued || len(b.kinds(r.ID)) != 1 {
		t.Fatalf("run after a failed hook = %+v %v, want untouched", got, b.kinds(r.ID))
	}
}

func TestRecoverFailsInterruptedHubRunsOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{noRun: true})
	b.job("hub", OverlapQueue, nil)
	b.job("ag", OverlapQueue, ptr("a1"))
	running := b.trigger("hub")
	queued := b.trigger("hub")
	agentRun := b.trigger("ag")
	w := b.db.Writer()
	if _, err := w.Exec(b.ctx, `UPDATE runs SET status = 'running' WHERE id IN (?, ?)`, running.ID, agentRun.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec(b.ctx, `INSERT INTO agent_tasks(id, agent_id, run_id, status, payload_json, created_at, updated_at)
		VALUES (?, 'a1', ?, 'sent', '{}', 1, 1)`, agentRun.ID, agentRun.ID); err != nil {
		t.Fatal(err)
	}
	n, err := b.svc.Recover(b.ctx)
	if err != nil || n != 1 {
		t.Fatalf("Recover = %d %v, want 1", n, err)
	}
	got := b.run(running.ID)
	if got.Status != storage.RunFailed || *got.Error != CodeHubRestarted {
		t.Fatalf("interrupted run = %+v", got)
	}
	if ev := b.event(running.ID, "failed"); ev.Message == "" {
		t.Fatal("no clear failed event")
	}
	if b.run(queued.ID).Status != storage.RunQueued || b.run(agentRun.ID).Status != storage.RunRunning {
		t.Fatal("Recover touched a queued run or an agent run with an open task")
	}
}

func TestShutdownFailsExecutingRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.job("j", OverlapQueue, nil)
	r := b.trigger("j")
	c := b.nextCall()
	b.stopLoop()
	<-c.ctx.Done()
	c.reply(Outcome{}, c.ctx.Err())
	if err := <-b.loopDone; err != nil {
		t.Fatal(err)
	}
	b.loopDone <- nil // for the cleanup
	got := b.run(r.ID)
	if got.Status != storage.RunFailed || *got.Error != CodeHubShutdown {
		t.Fatalf("run after shutdown = %+v", got)
	}
}

func TestAgentRunsWaitQuietlyAndTakeNoHubSlot(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{concurrency: 1})
	b.job("hub", OverlapQueue, nil)
	b.job("ag", OverlapQueue, ptr("a1"))
	hubRun := b.trigger("hub")
	first := b.nextCall()
	ar := b.trigger("ag")
	// Offline: the run stays queued and nothing is written for it, however often the dispatcher
	// looks. Ending the first Hub run makes it look (it starts the next one).
	for range 5 {
		b.svc.Wake()
	}
	hubRun2 := b.trigger("hub")
	first.reply(Outcome{Status: storage.RunSuccess}, nil)
	b.waitStatus(hubRun.ID, storage.RunSuccess)
	hc := b.nextCall() // hubRun2: the only Hub slot is taken again
	if hc.req.Run.ID != hubRun2.ID {
		t.Fatalf("executing %s", hc.req.Run.ID)
	}
	if got := b.run(ar.ID); got.Status != storage.RunQueued || len(b.kinds(ar.ID)) != 1 {
		t.Fatalf("offline agent run = %+v %v", got, b.kinds(ar.ID))
	}
	select {
	case r := <-b.agents.started:
		t.Fatalf("started %s on an offline agent", r.ID)
	default:
	}

	b.agents.setConnected("a1", true)
	b.svc.Wake()
	select {
	case r := <-b.agents.started:
		if r.ID != ar.ID {
			t.Fatalf("started %s", r.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent run not started after the agent connected (Hub slot busy must not matter)")
	}

	// The agent reports through the service.
	if err := b.svc.AppendEvents(b.ctx, ar.ID, Event{Kind: "start", Message: "start"}); err != nil {
		t.Fatal(err)
	}
	if err := b.svc.SetProgress(b.ctx, ar.ID, []byte(`{"v":1,"kind":"backup","stage":"upload","ts":1,"done":{"files":1,"dirs":0,"bytes":5}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Cancel(b.ctx, ar.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	if id := <-b.agents.canceled; id != ar.ID {
		t.Fatalf("agent cancel for %s", id)
	}
	if err := b.svc.Finish(b.ctx, ar.ID, Outcome{Status: storage.RunCanceled}); err != nil {
		t.Fatal(err)
	}
	if k := b.kinds(ar.ID); !eq(k, []string{"queued", "start", "upload", "cancel_requested", "canceled"}) {
		t.Fatalf("agent run events = %v", k)
	}
	hc.reply(Outcome{Status: storage.RunSuccess}, nil)
	b.waitStatus(hubRun2.ID, storage.RunSuccess)
}

func TestProgressIsThrottledAndFlushedAtTheEnd(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{noRun: true})
	r := b.runningAgentRun()
	p := progressValue
	set := func(v string) { t.Helper(); b.setProgress(r.ID, v) }
	stored := func() string { t.Helper(); return b.storedProgress(r.ID) }
	set(p("scan", 1, 0))
	if stored() != p("scan", 1, 0) {
		t.Fatalf("first value not written: %q", stored())
	}
	b.clk.Advance(300 * time.Millisecond)
	set(p("scan", 2, 0))
	if stored() != p("scan", 1, 0) {
		t.Fatal("a value within a second of the last write was written")
	}
	set(p("packaging", 0, 0)) // stage change: at once
	if stored() != p("packaging", 0, 0) {
		t.Fatalf("stage change not written: %q", stored())
	}
	b.clk.Advance(100 * time.Millisecond)
	set(p("packaging", 10, 10)) // done reaches total: at once
	if stored() != p("packaging", 10, 10) {
		t.Fatalf("completion not written: %q", stored())
	}
	set(p("packaging", 11, 20)) // held back ...
	b.clk.Advance(time.Second)  // ... and written when its second is up
	b.waitProgress(r.ID, p("packaging", 11, 20))
	b.clk.Advance(time.Second)
	set(p("packaging", 12, 20)) // a second after the last write: written at once
	if stored() != p("packaging", 12, 20) {
		t.Fatalf("value after a second not written: %q", stored())
	}
	set(p("packaging", 13, 20)) // held back ...
	if err := b.svc.Finish(b.ctx, r.ID, Outcome{Status: storage.RunSuccess}); err != nil {
		t.Fatal(err)
	}
	if stored() != p("packaging", 13, 20) { // ... and flushed with the result
		t.Fatalf("last value not flushed: %q", stored())
	}
	if k := b.kinds(r.ID); !eq(k, []string{"queued", "scan", "packaging", "complete"}) {
		t.Fatalf("stage events = %v", k)
	}
	set(p("upload", 1, 0)) // late: ignored
	if stored() != p("packaging", 13, 20) || len(b.kinds(r.ID)) != 4 {
		t.Fatal("progress after the end changed the run")
	}
}

func TestProgressStageEventNotRepeatedAfterRestart(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{noRun: true})
	b.job("ag", OverlapQueue, ptr("a1"))
	r := b.trigger("ag")
	if _, err := b.db.Writer().Exec(b.ctx, `UPDATE runs SET status = 'running', progress_json = '{"stage":"upload"}' WHERE id = ?`, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.svc.SetProgress(b.ctx, r.ID, []byte(`{"v":1,"stage":"upload","done":{"bytes":9}}`)); err != nil {
		t.Fatal(err)
	}
	if k := b.kinds(r.ID); !eq(k, []string{"queued"}) {
		t.Fatalf("events = %v: the stored stage was upload already", k)
	}
}

func TestTriggerArchivedOrMissingJob(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{noRun: true})
	b.job("j", OverlapQueue, nil)
	if err := b.db.Writer().ArchiveJob(b.ctx, "j", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Trigger(b.ctx, "j", SourceManual); !errors.Is(err, ErrJobArchived) {
		t.Fatalf("trigger archived = %v", err)
	}
	if _, err := b.svc.Trigger(b.ctx, "nope", SourceManual); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("trigger missing = %v", err)
	}
}

func TestDeletedJobAbortsItsExecution(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	j := b.job("j", OverlapQueue, nil)
	r := b.trigger("j")
	c := b.nextCall()
	if err := b.db.Writer().DeleteJob(b.ctx, "j"); err != nil {
		t.Fatal(err)
	}
	b.svc.Abort(b.ctx, j, r.ID)
	<-c.ctx.Done()
	if !errors.Is(context.Cause(c.ctx), errRunDeleted) {
		t.Fatalf("cause = %v", context.Cause(c.ctx))
	}
	c.reply(Outcome{}, c.ctx.Err())
	// The finalization finds no row and records nothing; the slot is free again.
	b.job("k", OverlapQueue, nil)
	k := b.trigger("k")
	b.nextCall().reply(Outcome{Status: storage.RunSuccess}, nil)
	b.waitStatus(k.ID, storage.RunSuccess)
}

// TestBacklogOfOneJobDoesNotHoldUpOthers: a job with a long backlog must not fill every candidate
// of a dispatch pass. With 20 runs of a queued before one of b and two slots, one pass (no second
// wake to paper over it) starts a1 and b.
func TestBacklogOfOneJobDoesNotHoldUpOthers(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{concurrency: 2, noRun: true, stopOnCancel: true})
	b.job("a", OverlapQueue, nil)
	b.job("b", OverlapQueue, nil)
	var backlog []storage.Run
	for range 20 {
		backlog = append(backlog, b.trigger("a"))
	}
	b.clk.Advance(time.Second)
	bRun := b.trigger("b")
	<-b.svc.wake // the triggers' pending wake: the loop gets exactly one pass
	b.startLoop()

	first, second := b.nextCall(), b.nextCall()
	got := map[string]bool{first.req.Run.ID: true, second.req.Run.ID: true}
	if !got[backlog[0].ID] || !got[bRun.ID] {
		t.Fatalf("executing %v, want a's oldest run %s and b's %s", got, backlog[0].ID, bRun.ID)
	}
	first.reply(Outcome{Status: storage.RunSuccess}, nil)
	second.reply(Outcome{Status: storage.RunSuccess}, nil)
	// a's backlog then runs in order, one at a time.
	for _, r := range backlog[1:] {
		c := b.nextCall()
		if c.req.Run.ID != r.ID {
			t.Fatalf("executing %s, want %s (a's backlog in order)", c.req.Run.ID, r.ID)
		}
		c.reply(Outcome{Status: storage.RunSuccess}, nil)
	}
}

// TestAgentBacklogOfOneJobDoesNotHoldUpOthers is the same for the runs of one agent: a batch
// full of one job's runs must not leave another job of the agent waiting.
func TestAgentBacklogOfOneJobDoesNotHoldUpOthers(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{noRun: true})
	b.job("a", OverlapQueue, ptr("ag"))
	b.job("b", OverlapQueue, ptr("ag"))
	for range agentBatch + 1 {
		b.trigger("a")
	}
	b.clk.Advance(time.Second)
	bRun := b.trigger("b")
	b.agents.setConnected("ag", true)
	<-b.svc.wake
	b.startLoop()

	started := map[string]bool{}
	for range 2 {
		select {
		case r := <-b.agents.started:
			started[r.JobID] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("agent runs started: %v, want one of a and b's %s", started, bRun.ID)
		}
	}
	if !started["a"] || !started["b"] {
		t.Fatalf("agent runs started for jobs %v, want a and b", started)
	}
}

// TestHeldBackProgressIsWrittenWhenItsSecondIsUp: a value held back by the one-second throttle is
// written once the second has passed, through a timer on the clock, even if no report follows
// (an agent stuck on one large file sends none).
func TestHeldBackProgressIsWrittenWhenItsSecondIsUp(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{noRun: true})
	r := b.runningAgentRun()
	p := func(done int) string { return progressValue("upload", done, 0) }
	set := func(v string) { t.Helper(); b.setProgress(r.ID, v) }
	stored := func() string { t.Helper(); return b.storedProgress(r.ID) }
	armedAt := func(want time.Time) {
		t.Helper()
		if at, ok := b.clk.NextDeadline(); !ok || !at.Equal(want) {
			t.Fatalf("timer armed at %v (%t), want %v: nothing writes the held-back value", at, ok, want)
		}
	}

	set(p(1)) // written at once
	b.clk.Advance(300 * time.Millisecond)
	set(p(2)) // held back ...
	b.clk.Advance(200 * time.Millisecond)
	set(p(3)) // ... replaced by a newer one
	if stored() != p(1) {
		t.Fatalf("a value within the second was written: %s", stored())
	}
	armedAt(epoch.Add(time.Second))
	b.clk.Advance(500 * time.Millisecond) // the second is up
	b.waitProgress(r.ID, p(3))

	set(p(4)) // within a second of that write: held back again, until epoch+2s
	armedAt(epoch.Add(2 * time.Second))
	if err := b.svc.Finish(b.ctx, r.ID, Outcome{Status: storage.RunSuccess}); err != nil {
		t.Fatal(err)
	}
	if stored() != p(4) {
		t.Fatalf("last value not flushed with the result: %s", stored())
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.clk.Armed() != 0 { // the run's end stops the timer
		if time.Now().After(deadline) {
			t.Fatal("the flush timer of a finished run is still armed")
		}
		time.Sleep(time.Millisecond) // polling the clock until a deadline
	}
}

func TestNewIDIsARandomUUIDv4(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		id := NewID()
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 || u.String() != id || seen[id] {
			t.Fatalf("NewID() = %q (%v): want distinct lower-case UUIDv4 strings", id, err)
		}
		seen[id] = true
	}
}

// A backup of a job whose restore drill runs stays queued, without holding up other jobs, and
// starts once the drill ends; an agent job's run waits the same way.
func TestBackupWaitsForTheJobsDrill(t *testing.T) {
	t.Parallel()
	gate := jobgate.New(1)
	b := setup(t, opts{gate: gate})
	gate.OnDrillEnd(b.svc.Wake)
	agent := "a1"
	b.job("j1", OverlapQueue, nil)
	b.job("j2", OverlapQueue, nil)
	b.job("j3", OverlapQueue, &agent)
	b.agents.setConnected(agent, true)
	release := gate.Hold("j1", "local_dir:hub:/srv/bk")
	release3 := gate.Hold("j3", "local_dir:a1:/srv/bk")
	r1 := b.trigger("j1")
	r3 := b.trigger("j3")
	r2 := b.trigger("j2")
	c := b.nextCall()
	if c.req.Run.ID != r2.ID {
		t.Fatalf("started %s while the drill of j1 runs", c.req.Run.ID)
	}
	n := b.passes.count()
	b.svc.Wake()
	if _, ok := b.passes.wait(n); !ok {
		t.Fatal("no dispatch pass")
	}
	if got := b.run(r1.ID); got.Status != storage.RunQueued {
		t.Fatalf("backup of j1 is %s while its drill runs", got.Status)
	}
	if got := b.run(r3.ID); got.Status != storage.RunQueued {
		t.Fatalf("agent backup of j3 is %s while its drill runs", got.Status)
	}
	release()
	c1 := b.nextCall()
	if c1.req.Run.ID != r1.ID {
		t.Fatalf("after the drill ended, started %s, want %s", c1.req.Run.ID, r1.ID)
	}
	c.reply(Outcome{Status: storage.RunSuccess}, nil)
	c1.reply(Outcome{Status: storage.RunSuccess}, nil)
	release3()
	select {
	case r := <-b.agents.started:
		if r.ID != r3.ID {
			t.Fatalf("agent started %s", r.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent backup did not start after its drill ended")
	}
}

// The observer (metrics' run duration histogram) hears of every run that ran, with how long it
// ran by the injected clock, canceled ones included; never of a queued run canceled before it
// started.
func TestObserverHearsHowLongEachRunRan(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{concurrency: 1, stopOnCancel: true})
	b.job("j1", OverlapQueue, nil)
	b.job("j2", OverlapQueue, nil)
	r1 := b.trigger("j1")
	c := b.nextCall()
	queued := b.trigger("j2")
	if _, err := b.svc.Cancel(b.ctx, queued.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	b.clk.Advance(90 * time.Second)
	c.reply(Outcome{Status: storage.RunSuccess}, nil)
	b.waitStatus(r1.ID, storage.RunSuccess)
	next := func() endedRun {
		t.Helper()
		select {
		case e := <-b.ended:
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("the observer heard of no run")
			return endedRun{}
		}
	}
	if e := next(); e != (endedRun{"j1", storage.RunSuccess, 90 * time.Second}) {
		t.Fatalf("observed %+v, want j1 success after 90s", e)
	}

	r2 := b.trigger("j1")
	c = b.nextCall()
	b.clk.Advance(5 * time.Second)
	if _, err := b.svc.Cancel(b.ctx, r2.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	<-c.ctx.Done()
	b.waitStatus(r2.ID, storage.RunCanceled)
	if e := next(); e != (endedRun{"j1", storage.RunCanceled, 5 * time.Second}) {
		t.Fatalf("observed %+v, want j1 canceled after 5s", e)
	}
	select {
	case e := <-b.ended:
		t.Fatalf("observed %+v as well: a queued run canceled before it ran has no duration", e)
	default:
	}
}

// Package runs is the run queue and lifecycle of the Hub: enqueueing with the overlap policy,
// executing Hub runs with bounded concurrency, handing agent runs to an AgentRunner, cancel,
// first-result-wins/cancel-wins finalization with hooks in the same transaction, crash recovery,
// the group-committed run event log with its live per-run bus, and run history pruning.
//
// The runs table is the queue: a queued row is work, so a crash never loses a trigger. One
// dispatcher goroutine starts runs; it sleeps until something is enqueued, a run ends, an agent
// connects (Wake) or the service stops, and never polls.
package runs

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/internal/lograte"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/storage"
)

// Trigger sources, recorded in the "queued" event.
const (
	SourceManual   = "manual"
	SourceSchedule = "schedule"
	SourceCatchUp  = "catch_up"
)

// Error codes stored in runs.error by this package.
const (
	CodeOverlapRejected = "overlap_rejected"
	CodeCanceled        = "canceled"
	CodeHubRestarted    = "hub_restarted"
	CodeHubShutdown     = "hub_shutdown"
	CodeInvalidSpec     = "invalid_spec"
	CodeRunFailed       = "run_failed"
	CodeNoExecutor      = "no_executor"
)

// DefaultConcurrency is how many Hub runs execute at once unless configured.
const DefaultConcurrency = 2

// ErrJobArchived is returned by Trigger for an archived job: it cannot be run by hand.
var ErrJobArchived = errors.New("job is archived")

// Executor runs one Hub-executed run. The backup engine implements it.
//
// Execute returns when the run is over. It must watch ctx: the context ends when the run is
// canceled or the Hub stops, and the executor should then clean up and return promptly (whatever
// it returns, a canceled run ends canceled). A non-nil error is recorded as a failed run with code
// run_failed and the error's text as message, so it must not carry secrets; return an Outcome
// with Status failed and an Error to choose the code, kind and hint.
type Executor interface {
	Execute(ctx context.Context, req ExecRequest) (Outcome, error)
}

// ExecRequest is what an executor gets. Run is already "running" with its real started_at.
type ExecRequest struct {
	Run  storage.Run
	Job  storage.Job
	Spec *jobspec.Spec // parsed and validated
	// Events appends to the run's event log (durably, in order) and publishes live.
	Events EventSink
	// Progress stores the run's latest progress value, at most once a second except on a stage
	// change or completion; the last value is flushed when the run ends. It adds no stage events:
	// the executor emits those itself.
	Progress ProgressSink
}

// EventSink appends run events.
type EventSink interface {
	Append(ctx context.Context, events ...Event) error
}

// ProgressSink stores progress snapshots ({v:1, kind, stage, ts, done, total?, ...} as JSON).
type ProgressSink interface {
	SetProgress(ctx context.Context, progressJSON []byte) error
}

// Event is a run event to append. Fields is marshalled to JSON (a json.RawMessage is kept as is);
// nil stores no fields.
type Event struct {
	Level   string // info | warn | error; "" means info
	Kind    string
	Message string
	Fields  any
}

// Outcome is how a run ended.
type Outcome struct {
	Status  string          // storage.RunSuccess, storage.RunFailed or storage.RunCanceled
	Summary json.RawMessage // stored in runs.summary_json (not for canceled runs)
	Error   *RunError       // for failed runs; nil gives run_failed
	// Artifact describes the snapshot a successful run stored; the snapshot indexing hook writes
	// run_artifacts from it.
	Artifact *Artifact
}

// RunError classifies a failure. Code goes to runs.error; the rest to the "failed" event as
// error_kind, hint and error_envelope.
type RunError struct {
	Code      string // e.g. run_failed, snapshot_unavailable, target_auth
	Kind      string // e.g. network, auth, config, io, unknown
	Hint      string
	Message   string
	Retriable bool
	Protocol  string // transport protocol, e.g. webdav, local; "" when none
}

// Artifact is the snapshot a successful run stored, for run_artifacts.
type Artifact struct {
	NodeID         string // "hub" or the agent id
	TargetType     string
	TargetSnapshot json.RawMessage
	Format         string // archive_v1 | raw_tree_v1
	SourceFiles    *int64
	SourceDirs     *int64
	SourceBytes    *int64
	TransferBytes  *int64
}

// Finished describes a run that reached a terminal status, for hooks. For a rejected run,
// Outcome.Status is "rejected" and the rest of Outcome is empty.
type Finished struct {
	Run     storage.Run // as stored after the terminal write
	Job     storage.Job
	Outcome Outcome
}

// FinishHook runs inside the write transaction that sets a run's terminal status (success,
// failed or rejected; never canceled). It must only use q (no other transaction, no I/O); an
// error rolls the whole finalization back and the finalization is retried.
type FinishHook func(ctx context.Context, q storage.Q, f Finished) error

// AgentRunner starts and cancels runs of jobs bound to an agent.
type AgentRunner interface {
	Connected(agentID string) bool
	// Start atomically moves the queued run to running and persists its agent task, then sends it.
	// started=false (no error) when the agent is not connected: the run stays queued, quietly.
	Start(ctx context.Context, run storage.Run, job storage.Job) (started bool, err error)
	// Cancel asks the agent to cancel a running run (best effort; re-sent on reconnect).
	Cancel(ctx context.Context, agentID, runID string) error
}

// BackupGate says whether a backup of a job may be claimed now; done is called once the claim
// committed or failed. engine/jobgate.Gate implements it.
type BackupGate interface {
	BackupStarting(jobID string) (done func(), ok bool)
}

// Config builds a Service.
type Config struct {
	DB    *storage.DB
	Clock clock.Clock
	Log   zerolog.Logger
	// Concurrency is how many Hub runs execute at once (default 2). Agent runs do not count.
	Concurrency int
	// Executor executes Hub runs. Nil: they fail with no_executor.
	Executor Executor
	// Agents starts agent runs. Nil: agent runs stay queued.
	Agents AgentRunner
	// OnFinished hooks run in the finalizing transaction, in order.
	OnFinished []FinishHook
	// AfterFinished run after that transaction commits (wake-ups); they must not block.
	AfterFinished []func(Finished)
	// Gate, when set, keeps a backup queued while a restore drill of its job runs (engine/jobgate).
	Gate BackupGate
	// Bus carries committed run events to live subscribers; nil creates one. Pass a shared bus
	// when another service (notifications) also appends run events.
	Bus *Bus
	// Observer is told about every run that ran and ended (metrics); nil: nobody.
	Observer Observer
}

// Observer watches runs end, for metrics. RunEnded is called after the run's terminal write
// committed, once per run that had started (success, failed or canceled while running; not a
// queued run canceled or rejected), with how long it ran by its stored start and end times. It
// must not block.
type Observer interface {
	RunEnded(jobID, status string, ran time.Duration)
}

// Service is the run queue. Create it with New, call Recover once at start, then Run.
type Service struct {
	db     *storage.DB
	clock  clock.Clock
	log    zerolog.Logger
	conc   int
	exec   Executor
	agents AgentRunner
	gate   BackupGate
	hooks  []FinishHook
	after  []func(Finished)
	bus    *Bus
	obs    Observer
	app    *appender
	wake   chan struct{}
	errLog lograte.Limiter
	execWG sync.WaitGroup // executing Hub runs

	// hookPass, a test hook set before Run, is told about every dispatch pass when it ends.
	hookPass func(passReport)

	startMu sync.Mutex
	started bool

	mu       sync.Mutex
	active   int                                // Hub runs executing
	cancels  map[string]context.CancelCauseFunc // Hub runs executing, by run id
	progress map[string]*progressState          // runs that reported progress
}

// New returns a service; nothing runs until Run.
func New(cfg Config) *Service {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Bus == nil {
		cfg.Bus = NewBus()
	}
	s := &Service{
		db: cfg.DB, clock: cfg.Clock, log: cfg.Log.With().Str("component", "runs").Logger(),
		conc: cfg.Concurrency, exec: cfg.Executor, agents: cfg.Agents, gate: cfg.Gate,
		hooks: cfg.OnFinished, after: cfg.AfterFinished,
		bus: cfg.Bus, obs: cfg.Observer, wake: make(chan struct{}, 1),
		cancels: map[string]context.CancelCauseFunc{}, progress: map[string]*progressState{},
	}
	s.app = newAppender(cfg.DB, s.bus)
	return s
}

// Bus is the live event bus, for streaming.
func (s *Service) Bus() *Bus { return s.bus }

// Wake makes the dispatcher look for startable runs now: call it when an agent connects.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// errStopped is the cancel cause of Hub runs when the service stops.
var errStopped = errors.New("hub is shutting down")

// errCancelRequested is the cancel cause of a Hub run whose cancel was requested.
var errCancelRequested = errors.New("cancel requested")

// NewID returns a random UUIDv4 (run and job ids).
func NewID() string { return uuid.NewString() }

func isTerminal(status string) bool {
	switch status {
	case storage.RunSuccess, storage.RunFailed, storage.RunRejected, storage.RunCanceled:
		return true
	}
	return false
}

func ptr[T any](v T) *T { return &v }

// Package operations runs restores and verifies (restore drills) of snapshots as operations:
// each starts at once in its own goroutine, outside the run queue, writes its events and
// progress to the operations tables, can be canceled cooperatively, and ends success, failed or
// canceled. Operations left running by a crash are marked failed by Recover at the next start.
//
// Operations on the Hub work in <data_dir>/operations/<op_id>/ (removed afterwards). Restoring
// onto an agent goes through a Remote, which the agents package implements.
package operations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/internal/latest"
	"github.com/bastion-backup/bastion/engine/progress"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/scratch"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/storage"
)

// Error codes stored in operations.error (as "code: message") and returned by the service.
const (
	CodeHubRestarted = "hub_restarted"
	CodeHubShutdown  = "hub_shutdown"
	CodeCanceled     = "canceled"
	CodeVerifyFailed = "verify_failed"
)

// SubjectRun is the subject_kind of operations about a run's snapshot.
const SubjectRun = "run"

// ShutdownGrace bounds how long Run waits for operations to stop after its context ends.
const ShutdownGrace = 30 * time.Second

// TargetOpener opens the target a snapshot lives on (engine/targets/opener.Opener).
type TargetOpener interface {
	Open(ctx context.Context, rt targets.RunTarget) (targets.Target, error)
}

// Remote runs restores whose destination is on an agent. The agents package implements it, and
// also RemoteEntries and RemoteVerifier, which serve snapshots only an agent can read.
//
// A remote restore is not a goroutine of this process: Start hands it to the agent (stored
// before it is sent, so it survives reconnects and Hub restarts) and returns; what the agent
// reports comes back through RemoteEvent, RemoteProgress and FinishRemote, which the agents
// package calls. Recover leaves such an operation running while its agent still owes the result.
type Remote interface {
	// Check refuses, before anything is stored, a restore that node cannot run now, with an
	// *InputError (the agent is not connected, the snapshot is out of its reach, ...).
	Check(ctx context.Context, node string, task RestoreTask) error
	// Start sends task to node. An error fails the operation at once.
	Start(ctx context.Context, node string, task RestoreTask) error
	// Cancel asks the agent running opID to stop; the request survives reconnects.
	Cancel(ctx context.Context, opID string) error
}

// RemoteEntries lists the entries index of a snapshot that only its agent can read (a local_dir
// target on that agent), for the restore picker. A Remote that implements it serves
// Service.Entries for such snapshots.
type RemoteEntries interface {
	// Entries answers one page, or ErrInvalidCursor, an *AgentError (the agent could not
	// answer), or a *targets.Error (the agent could not read the snapshot).
	Entries(ctx context.Context, node string, task EntriesTask) (restore.Page, error)
}

// RemoteVerifier runs verifies of snapshots that only their agent can read on that agent. A
// Remote that implements it serves Service.StartVerify for such snapshots; the agent reports
// through RemoteEvent, RemoteProgress and FinishRemote, as for restores.
type RemoteVerifier interface {
	// CheckVerify refuses, before anything is stored, a verify node cannot run now, with an
	// *InputError.
	CheckVerify(ctx context.Context, node string, task VerifyTask) error
	// StartVerify sends task to node. An error fails the operation at once.
	StartVerify(ctx context.Context, node string, task VerifyTask) error
}

// VerifyTask is what an agent needs to verify a snapshot.
type VerifyTask struct {
	OperationID string
	JobID       string
	RunID       string
	Target      targets.RunTarget // where the snapshot lives
	// SQLiteSnapshot names the database to integrity-check inside the snapshot ("" skips it).
	SQLiteSnapshot string
	// SampleFiles > 0: a restore test of that many random files plus the largest (drills).
	SampleFiles int
}

// onAgentOnly reports whether only the agent that wrote the snapshot can read it: it is in one of
// that agent's directories. (An agent's WebDAV snapshot is read by the Hub with the agent's
// credential.)
func onAgentOnly(rt targets.RunTarget) bool {
	if rt.NodeID == "" || rt.NodeID == opener.HubNode {
		return false
	}
	_, local := all.Registry.LocalPathOf(rt.Target)
	return local
}

// Codes of AgentError.
const (
	CodeAgentOffline     = "agent_offline"     // not connected, or gone before it answered
	CodeAgentTimeout     = "agent_timeout"     // connected, but no answer in time
	CodeAgentUnsupported = "agent_unsupported" // the agent does not know the request (an older agent)
)

// AgentError: the agent that alone can read a snapshot could not answer a request about it.
// Reason tells apart an agent that was not connected ("not_connected") from one that went away
// while the request was pending ("disconnected").
type AgentError struct {
	Code    string
	Reason  string
	Message string
	Err     error
}

func (e *AgentError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *AgentError) Unwrap() error { return e.Err }

// RestoreTask is what an agent needs to restore a snapshot.
type RestoreTask struct {
	OperationID string             `json:"op_id"`
	JobID       string             `json:"job_id"`
	RunID       string             `json:"run_id"`
	Target      targets.RunTarget  `json:"target"` // where the snapshot lives
	Destination Destination        `json:"destination"`
	Conflict    string             `json:"conflict_policy"`
	Selection   *restore.Selection `json:"selection,omitempty"`
	// KeepSpecialBits keeps setuid, setgid and sticky bits (see restore.Request).
	KeepSpecialBits bool `json:"keep_special_bits,omitempty"`
}

// Config configures New.
type Config struct {
	DB      *storage.DB
	Clock   clock.Clock
	Logger  zerolog.Logger
	DataDir string
	Opener  TargetOpener
	// Keys gives age identities for encrypted snapshots (engine/agekeys.Keys).
	Keys restore.IdentityProvider
	// Remote restores onto agents; nil refuses destinations other than the Hub.
	Remote Remote
	// EntriesCacheMaxBytes bounds the restore picker's index cache under
	// <DataDir>/cache/entries (DefaultEntriesCacheMaxBytes when 0).
	EntriesCacheMaxBytes int64
}

// Service starts, tracks and cancels operations. Safe for concurrent use.
type Service struct {
	db      *storage.DB
	clock   clock.Clock
	log     zerolog.Logger
	dataDir string
	opener  TargetOpener
	keys    restore.IdentityProvider
	remote  Remote

	base context.Context
	stop context.CancelCauseFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	cancels map[string]context.CancelCauseFunc // running operations of this process

	entries *IndexCache

	finishHooks []FinishHook
	afterHooks  []func(storage.Operation)
}

var (
	errShutdown        = errors.New("the Hub is shutting down")
	errCancelRequested = errors.New("cancel requested")
)

// New returns a Service. Call Recover once before serving requests, and supervise Run.
func New(c Config) *Service {
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	base, stop := context.WithCancelCause(context.Background())
	s := &Service{
		db: c.DB, clock: c.Clock, log: c.Logger.With().Str("component", "operations").Logger(),
		dataDir: c.DataDir, opener: c.Opener, keys: c.Keys, remote: c.Remote,
		base: base, stop: stop, cancels: map[string]context.CancelCauseFunc{},
	}
	s.entries = NewIndexCache(filepath.Join(c.DataDir, "cache", "entries"), c.EntriesCacheMaxBytes)
	return s
}

// Recover marks every operation left running by a previous process as failed, with an event
// saying why, and removes what operations left in <data_dir>/operations/. A restore running on
// an agent whose task is still open is left running: the agent reports its end. Call it before
// any operation can start.
func (s *Service) Recover(ctx context.Context) (int, error) {
	n := 0
	for {
		ops, err := s.db.Reader().ListInterruptedOperations(ctx, 100)
		if err != nil {
			return n, fmt.Errorf("recover operations: %w", err)
		}
		if len(ops) == 0 {
			if err := scratch.Empty(filepath.Join(s.dataDir, "operations")); err != nil {
				s.log.Warn().Err(err).Msg("remove leftovers of interrupted operations")
			}
			if err := s.pruneEntries(ctx); err != nil {
				s.log.Warn().Err(err).Msg("prune the entries cache")
			}
			return n, nil
		}
		for _, op := range ops {
			msg := "the Hub stopped while this operation was running"
			if _, err := s.finish(ctx, op.ID, storage.OperationFailed, nil, CodeHubRestarted+": "+msg, CodeHubRestarted, nil); err != nil {
				return n, fmt.Errorf("recover operation %s: %w", op.ID, err)
			}
			_ = os.RemoveAll(s.opDir(op.ID))
			s.log.Warn().Str("operation_id", op.ID).Str("kind", op.Kind).Msg("operation interrupted by a restart marked failed")
			n++
		}
	}
}

// Run waits for ctx to end, then cancels the running operations and waits for them (at most
// ShutdownGrace); those that stop end failed with hub_shutdown. It is a supervised Hub loop.
func (s *Service) Run(ctx context.Context) error {
	<-ctx.Done()
	s.stop(errShutdown)
	idle := make(chan struct{})
	go func() { s.wg.Wait(); close(idle) }()
	grace := s.clock.NewTimer(ShutdownGrace)
	defer grace.Stop()
	select {
	case <-idle:
	case <-grace.C():
		s.log.Warn().Msg("operations still running after the shutdown grace; they are marked failed at the next start")
	}
	return nil
}

// Cancel asks a running operation to stop; repeats and ended operations return the stored
// state unchanged. ErrNotFound when it does not exist.
func (s *Service) Cancel(ctx context.Context, opID string, userID int64, reason string) (storage.Operation, error) {
	var uid *int64
	if userID > 0 {
		uid = &userID
	}
	var why *string
	if reason != "" {
		why = &reason
	}
	now := s.clock.Now().Unix()
	var op storage.Operation
	first := false
	err := s.db.Write(ctx, func(q storage.Q) error {
		before, err := q.GetOperation(ctx, opID)
		if err != nil {
			return err
		}
		if op, err = q.RequestOperationCancel(ctx, opID, uid, why, now); err != nil {
			return err
		}
		first = before.CancelRequestedAt == nil && op.CancelRequestedAt != nil
		if !first {
			return nil
		}
		fields := map[string]any{}
		if reason != "" {
			fields["reason"] = reason
		}
		return appendEvent(ctx, q, opID, now, "warn", "cancel_requested", "cancel requested", fields)
	})
	if errors.Is(err, storage.ErrNotFound) {
		return op, ErrNotFound
	}
	if err != nil {
		return op, err
	}
	if first {
		s.mu.Lock()
		cancel := s.cancels[opID]
		s.mu.Unlock()
		switch {
		case cancel != nil:
			cancel(errCancelRequested)
		case op.NodeID != opener.HubNode && s.remote != nil:
			if err := s.remote.Cancel(ctx, opID); err != nil {
				return op, fmt.Errorf("cancel operation %s on node %s: %w", opID, op.NodeID, err)
			}
		}
	}
	return op, nil
}

// ErrNotFound is returned for an operation that does not exist.
var ErrNotFound = errors.New("operation not found")

// launch registers op's cancel function, inserts it with its first event (in that order, so a
// cancel committed right after the insert finds the function), and runs work in a goroutine.
func (s *Service) launch(ctx context.Context, op storage.Operation, startFields map[string]any,
	work func(ctx context.Context, o *opRun) (summary any, err error)) (storage.Operation, error) {
	if s.base.Err() != nil {
		return op, errShutdown
	}
	runCtx, cancel := context.WithCancelCause(s.base)
	s.mu.Lock()
	s.cancels[op.ID] = cancel
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		delete(s.cancels, op.ID)
		s.mu.Unlock()
		cancel(nil)
	}
	if err := s.insert(ctx, op, startFields); err != nil {
		release()
		return op, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer release()
		s.execute(runCtx, op, work)
	}()
	return op, nil
}

// insert stores a new operation with its first event.
func (s *Service) insert(ctx context.Context, op storage.Operation, startFields map[string]any) error {
	return s.db.Write(ctx, func(q storage.Q) error {
		if err := q.InsertOperation(ctx, op); err != nil {
			return err
		}
		return appendEvent(ctx, q, op.ID, op.StartedAt, "info", "start", op.Kind+" started", startFields)
	})
}

// opRun is what a running operation reports through.
type opRun struct {
	s   *Service
	id  string
	dir string
	log zerolog.Logger
	rep *progress.Reporter
}

// Emit implements restore.EventSink.
func (o *opRun) Emit(level, kind, message string, fields map[string]any) {
	now := o.s.clock.Now().Unix()
	err := o.s.db.Write(context.Background(), func(q storage.Q) error {
		return appendEvent(context.Background(), q, o.id, now, level, kind, message, fields)
	})
	if err != nil {
		o.log.Warn().Err(err).Str("event", kind).Msg("append operation event")
	}
}

func (s *Service) execute(ctx context.Context, op storage.Operation, work func(context.Context, *opRun) (any, error)) {
	log := s.log.With().Str("operation_id", op.ID).Str("kind", op.Kind).Logger()
	o := &opRun{s: s, id: op.ID, dir: s.opDir(op.ID), log: log}
	pw := latest.Start(context.Background(), func(ctx context.Context, v []byte) {
		if err := s.db.Writer().SetOperationProgress(ctx, op.ID, string(v), s.clock.Now().Unix()); err != nil {
			log.Warn().Err(err).Msg("store operation progress")
		}
	})
	kind := progress.KindRestore
	if op.Kind == storage.OperationVerify {
		kind = progress.KindVerify
	}
	o.rep = progress.NewReporter(kind, s.clock, func(snap progress.Snapshot) {
		if b, err := json.Marshal(snap); err == nil {
			pw.Set(b)
		}
	})

	summary, err := s.runWork(ctx, o, work)
	o.rep.Close()
	pw.Close()
	if rerr := os.RemoveAll(o.dir); rerr != nil {
		log.Warn().Err(rerr).Msg("remove operation directory")
	}

	var raw *string
	if summary != nil {
		if b, jerr := json.Marshal(summary); jerr == nil {
			raw = ptr(string(b))
		}
	}
	status, msg, code := storage.OperationSuccess, "", ""
	switch cause := context.Cause(ctx); {
	case err == nil:
	case errors.Is(cause, errCancelRequested):
		status, code, msg = storage.OperationCanceled, CodeCanceled, CodeCanceled+": the operation was canceled"
	case errors.Is(cause, errShutdown):
		status, code, msg = storage.OperationFailed, CodeHubShutdown, CodeHubShutdown+": the Hub stopped while this operation was running"
	default:
		status, msg, code = storage.OperationFailed, err.Error(), errorCode(err)
	}
	// The last progress value was written when pw closed; finish keeps it.
	final, err := s.finish(context.Background(), op.ID, status, raw, msg, code, nil)
	if err != nil {
		log.Error().Err(err).Msg("record the end of an operation; it is marked failed at the next start")
		return
	}
	ev := log.Info()
	if final.Status != storage.OperationSuccess {
		ev = log.Warn().Str("error", msg)
	}
	ev.Str("status", final.Status).Msg("operation finished")
}

func (s *Service) runWork(ctx context.Context, o *opRun, work func(context.Context, *opRun) (any, error)) (summary any, err error) {
	defer func() {
		if v := recover(); v != nil {
			o.log.Error().Str("panic", fmt.Sprint(v)).Msg("operation panicked")
			err = fmt.Errorf("internal error: %v", v)
		}
	}()
	return work(ctx, o)
}

// finish writes the terminal status and the final event in one transaction.
func (s *Service) finish(ctx context.Context, id, status string, summary *string, msg, code string, progressJSON *string) (storage.Operation, error) {
	now := s.clock.Now().Unix()
	var out storage.Operation
	err := s.db.Write(ctx, func(q storage.Q) error {
		f := storage.OperationFinish{ID: id, Status: status, EndedAt: now, SummaryJSON: summary, ProgressJSON: progressJSON}
		if msg != "" {
			f.Error = &msg
		}
		op, ok, err := q.FinishOperation(ctx, f)
		if err != nil || !ok {
			out = op
			return err
		}
		out = op
		for _, h := range s.finishHooks {
			if err := h(ctx, q, op); err != nil {
				return err
			}
		}
		switch op.Status {
		case storage.OperationSuccess:
			return appendEvent(ctx, q, id, now, "info", "complete", "complete", nil)
		case storage.OperationCanceled:
			return appendEvent(ctx, q, id, now, "warn", "canceled", "canceled", nil)
		}
		return appendEvent(ctx, q, id, now, "error", "failed", msg, map[string]any{"error": code})
	})
	if err == nil && out.ID != "" && out.Status != storage.OperationRunning {
		for _, h := range s.afterHooks {
			h(out)
		}
	}
	return out, err
}

func appendEvent(ctx context.Context, q storage.Q, opID string, ts int64, level, kind, msg string, fields map[string]any) error {
	e := storage.OperationEvent{TS: ts, Level: level, Kind: kind, Message: msg}
	if len(fields) > 0 {
		b, err := json.Marshal(fields)
		if err != nil {
			return fmt.Errorf("encode fields of %s event: %w", kind, err)
		}
		e.FieldsJSON = ptr(string(b))
	}
	return q.AppendOperationEvent(ctx, opID, e)
}

// ErrorCode is the stable code of an operation failure, as operations.error and the failed
// event carry it: verify_failed, a restore engine code, a target code, else operation_failed.
func ErrorCode(err error) string { return errorCode(err) }

func errorCode(err error) string {
	var re *restore.Error
	var te *targets.Error
	var ve *VerifyError
	switch {
	case errors.As(err, &ve):
		return CodeVerifyFailed
	case errors.As(err, &re):
		return re.Code
	case errors.As(err, &te):
		return te.Code
	}
	return "operation_failed"
}

func (s *Service) opDir(id string) string { return filepath.Join(s.dataDir, "operations", id) }

func (s *Service) targetOf(a storage.RunArtifact, run storage.Run) (targets.RunTarget, error) {
	raw := a.TargetSnapshotJSON
	if raw == "" && run.TargetSnapshotJSON != nil {
		raw = *run.TargetSnapshotJSON
	}
	rt, err := opener.Parse(raw)
	if err != nil {
		return rt, err
	}
	if a.NodeID != "" {
		rt.NodeID = a.NodeID
	}
	return rt, nil
}

func ptr[T any](v T) *T { return &v }

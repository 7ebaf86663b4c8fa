// Package backupexec executes the Hub's own backup runs: it is the run queue's Executor. For each
// run it opens the job's target, gives the backup pipeline a private staging directory under
// <data_dir>/runs/<run_id>/, forwards the pipeline's events and progress to the run, and turns
// the result into the run's outcome (summary, snapshot metrics, classified error). IndexSnapshot
// is the finish hook that indexes a successful run's snapshot in the same transaction that
// records the success.
package backupexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/hooks"
	"github.com/bastion-backup/bastion/engine/internal/latest"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/pathguard"
	"github.com/bastion-backup/bastion/engine/progress"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/scratch"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/storage"
)

// TargetOpener opens the target a run writes to (engine/targets/opener.Opener).
type TargetOpener interface {
	Open(ctx context.Context, rt targets.RunTarget) (targets.Target, error)
}

// Config configures New.
type Config struct {
	// DataDir is the Hub's data directory; runs stage under DataDir/runs/<run_id>/.
	DataDir string
	Opener  TargetOpener
	// Keys gives age recipients (engine/agekeys.Keys); needed by encrypted jobs only.
	Keys   backup.KeyProvider
	Clock  clock.Clock
	Logger zerolog.Logger
	// AllowHooks lets runs execute their job's hooks. The Hub allows them (only an admin can set
	// them); an agent only when started with --allow-hooks. A job with hooks fails its run when
	// they are not allowed, rather than backing up without its before hook.
	AllowHooks bool
}

// CodeHooksNotAllowed is the error code of a run whose job has hooks on an agent that runs none.
const CodeHooksNotAllowed = "hooks_not_allowed"

// CodeHookFailed is the error code of a run a before hook aborted.
const CodeHookFailed = "hook_failed"

// Executor runs backups on the Hub. Safe for concurrent use: each run has its own directory.
type Executor struct {
	dataDir string
	opener  TargetOpener
	keys    backup.KeyProvider
	clock   clock.Clock
	log     zerolog.Logger
	hooks   bool
}

// New returns an Executor.
func New(c Config) *Executor {
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	return &Executor{dataDir: c.DataDir, opener: c.Opener, keys: c.Keys, clock: c.Clock, hooks: c.AllowHooks,
		log: c.Logger.With().Str("component", "backup-executor").Logger()}
}

// CleanRunDirs removes what runs left under <data_dir>/runs/ when the Hub stopped without
// finishing them (a crash, a kill). Call it at start, before the run queue runs anything.
func CleanRunDirs(dataDir string) error {
	if err := scratch.Empty(filepath.Join(dataDir, "runs")); err != nil {
		return fmt.Errorf("clean run directories: %w", err)
	}
	return nil
}

// CodeTargetInsideDataDir is the error code of a local_dir target inside the data directory.
const CodeTargetInsideDataDir = "target_inside_data_dir"

// checkTargetOutsideDataDir refuses a local_dir target in (or equal to) this node's data
// directory, symlinks resolved: the node empties parts of it at start, so such snapshots would
// vanish while still listed. Job validation refuses them already; this catches an edited
// database, and an agent's own data directory, which the Hub cannot see.
func (e *Executor) checkTargetOutsideDataDir(rt targets.RunTarget) error {
	if e.dataDir == "" {
		return nil
	}
	baseDir, local := all.Registry.LocalPathOf(rt.Target)
	if !local {
		return nil
	}
	inside, err := pathguard.Within(baseDir, e.dataDir)
	if err != nil {
		return &targets.Error{Kind: targets.KindConfig, Code: "local_dir_config", Op: "check local_dir target", Err: err}
	}
	if inside {
		return &targets.Error{Kind: targets.KindConfig, Code: CodeTargetInsideDataDir, Op: "check local_dir target",
			Hint: "choose a base_dir outside the data directory of the node that runs the job",
			Err:  fmt.Errorf("base_dir %s is inside the data directory %s (symlinks resolved)", baseDir, e.dataDir)}
	}
	return nil
}

// RunDir is where a run keeps its scratch files while it executes.
func RunDir(dataDir, runID string) string { return filepath.Join(dataDir, "runs", runID) }

// Execute runs one backup, between the job's before and after hooks, and reports how it ended.
// It returns an error only for a request it cannot make sense of; every failure of the backup
// itself is an Outcome with a classified error.
func (e *Executor) Execute(ctx context.Context, req runs.ExecRequest) (runs.Outcome, error) {
	if req.Spec == nil {
		return runs.Outcome{}, errors.New("execute run: no job spec")
	}
	if !req.Spec.HasHooks() {
		return e.backup(ctx, req)
	}
	if !e.hooks {
		return runs.Outcome{Status: storage.RunFailed, Error: &runs.RunError{Code: CodeHooksNotAllowed, Kind: targets.KindConfig,
			Message: "the job has hooks, but this agent was not started with --allow-hooks, so it runs no job commands; " +
				"start `bastion agent` with --allow-hooks on this machine, or remove the hooks from the job",
			Hint: "start the agent with --allow-hooks"}}, nil
	}
	events := eventSink{ctx: context.WithoutCancel(ctx), sink: req.Events, log: e.log}
	env := []string{"BASTION_JOB_ID=" + req.Job.ID, "BASTION_JOB_NAME=" + req.Job.Name, "BASTION_RUN_ID=" + req.Run.ID}
	h := req.Spec.Hooks
	var out runs.Outcome
	if b := h.Before; b != nil {
		err := hooks.Run(ctx, e.clock, hooks.Command{Name: "before", Argv: b.Command,
			Timeout: time.Duration(b.TimeoutSeconds) * time.Second, Env: env}, events)
		switch {
		case err != nil && ctx.Err() != nil:
			return runs.Outcome{Status: storage.RunCanceled}, nil
		case err != nil && b.OnFailure == jobspec.HookAbort:
			out = runs.Outcome{Status: storage.RunFailed, Error: &runs.RunError{Code: CodeHookFailed, Kind: targets.KindConfig,
				Message: err.Error() + "; the backup did not run (on_failure is abort)"}}
		case err != nil:
			events.Emit(backup.LevelWarn, "hook_failure_ignored", err.Error()+"; the backup runs anyway (on_failure is continue)", map[string]any{"hook": "before"})
		}
	}
	if out.Status == "" {
		var err error
		if out, err = e.backup(ctx, req); err != nil {
			return out, err
		}
	}
	// A canceled run (a user's cancel, the process stopping) ends now: no after hook.
	if a := h.After; a != nil && out.Status != storage.RunCanceled && ctx.Err() == nil {
		status := "success"
		if out.Status != storage.RunSuccess {
			status = "failed"
		}
		if a.When == jobspec.HookAlways || a.When == status || (a.When == jobspec.HookFailure && status == "failed") {
			err := hooks.Run(ctx, e.clock, hooks.Command{Name: "after", Argv: a.Command,
				Timeout: time.Duration(a.TimeoutSeconds) * time.Second, Env: append(env, "BASTION_RUN_STATUS="+status)}, events)
			if err != nil && ctx.Err() == nil {
				// The snapshot is what the run is for; a failed after hook does not undo it.
				events.Emit(backup.LevelWarn, "hook_failure_ignored", err.Error()+"; the run keeps its status", map[string]any{"hook": "after"})
			}
		}
	}
	return out, nil
}

// backup runs the backup itself.
func (e *Executor) backup(ctx context.Context, req runs.ExecRequest) (runs.Outcome, error) {
	log := e.log.With().Str("run_id", req.Run.ID).Str("job_id", req.Job.ID).Logger()
	rt := opener.FromSpec(opener.HubNode, req.Spec.Target)

	runDir := RunDir(e.dataDir, req.Run.ID)
	defer func() {
		// backup.Run removes staging itself; the run directory goes too, whatever happened.
		if err := os.RemoveAll(runDir); err != nil {
			log.Warn().Err(err).Msg("remove run directory")
		}
	}()

	// Events and progress outlive a cancel: the last ones say how the run stopped.
	wctx := context.WithoutCancel(ctx)
	events := eventSink{ctx: wctx, sink: req.Events, log: log}
	pw := latest.Start(wctx, func(ctx context.Context, v []byte) {
		if err := req.Progress.SetProgress(ctx, v); err != nil {
			log.Warn().Err(err).Msg("store run progress")
		}
	})
	rep := progress.NewReporter(progress.KindBackup, e.clock, func(s progress.Snapshot) {
		if b, err := json.Marshal(s); err == nil {
			pw.Set(b)
		}
	})
	defer pw.Close()
	defer rep.Close() // runs first: its last value reaches pw before pw flushes

	if err := e.checkTargetOutsideDataDir(rt); err != nil {
		return failedOutcome(ctx, rt, err, nil), nil
	}
	tgt, err := e.opener.Open(ctx, rt)
	if err != nil {
		return failedOutcome(ctx, rt, err, nil), nil
	}
	sum, err := backup.Run(ctx, backup.Request{
		JobID: req.Job.ID, RunID: req.Run.ID, StartedAt: time.Unix(req.Run.StartedAt, 0).UTC(),
		Spec: req.Spec, Target: tgt, StagingDir: filepath.Join(runDir, "staging"),
		Keys: e.keys, Events: events, Progress: rep, Logger: e.log, Clock: e.clock,
	})
	summary, jerr := json.Marshal(sum)
	if jerr != nil {
		return runs.Outcome{}, fmt.Errorf("encode summary of run %s: %w", req.Run.ID, jerr)
	}
	if err != nil {
		return failedOutcome(ctx, rt, err, summary), nil
	}
	snap, err := json.Marshal(rt)
	if err != nil {
		return runs.Outcome{}, fmt.Errorf("encode target of run %s: %w", req.Run.ID, err)
	}
	a := &runs.Artifact{NodeID: rt.NodeID, TargetType: rt.Target.Type, TargetSnapshot: snap,
		Format: sum.ArtifactFormat, TransferBytes: ptr(sum.Metrics.TransferTotalBytes)}
	if st := sum.Metrics.SourceTotal; st != nil {
		a.SourceFiles, a.SourceDirs, a.SourceBytes = ptr(int64(st.Files)), ptr(int64(st.Dirs)), ptr(int64(st.Bytes))
	}
	return runs.Outcome{Status: storage.RunSuccess, Summary: summary, Artifact: a}, nil
}

// failedOutcome classifies a backup failure for the run's error column and its failed event.
func failedOutcome(ctx context.Context, rt targets.RunTarget, err error, summary json.RawMessage) runs.Outcome {
	if ctx.Err() != nil {
		return runs.Outcome{Status: storage.RunCanceled}
	}
	re := &runs.RunError{Code: backup.CodeStagingIO, Kind: targets.KindUnknown, Message: err.Error(),
		Protocol: protocol(rt.Target)}
	var be *backup.Error
	var te *targets.Error
	switch {
	case errors.As(err, &be):
		re.Code, re.Kind, re.Hint, re.Retriable = be.Code, be.Kind, be.Hint, be.Retriable
	case errors.As(err, &te):
		re.Code, re.Kind, re.Hint, re.Retriable = te.Code, te.Kind, te.Hint, targets.Retriable(te.Kind)
	}
	return runs.Outcome{Status: storage.RunFailed, Summary: summary, Error: re}
}

// protocol names the transport of a target in error envelopes: "local" for a directory of the
// node, else the target's type ("webdav").
func protocol(t targets.Redacted) string {
	if _, local := all.Registry.LocalPathOf(t); local {
		return "local"
	}
	return t.Type
}

// eventSink forwards pipeline events to the run's event log.
type eventSink struct {
	ctx  context.Context
	sink runs.EventSink
	log  zerolog.Logger
}

func (s eventSink) Emit(level, kind, message string, fields map[string]any) {
	ev := runs.Event{Level: level, Kind: kind, Message: message}
	if fields != nil {
		ev.Fields = fields
	}
	if err := s.sink.Append(s.ctx, ev); err != nil {
		s.log.Warn().Err(err).Str("event", kind).Msg("append run event")
	}
}

func ptr[T any](v T) *T { return &v }

var (
	_ runs.Executor   = (*Executor)(nil)
	_ runs.FinishHook = IndexSnapshot
)

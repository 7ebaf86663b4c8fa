package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/storage"
)

// Tunables of the dispatcher.
const (
	// retryDelay is the pause after a database error before the dispatcher looks again.
	retryDelay = 5 * time.Second
	// ShutdownGrace bounds how long Run waits for executing Hub runs after its context ends.
	ShutdownGrace = 30 * time.Second
	// agentBatch bounds the jobs whose oldest queued run is looked at per connected agent per pass.
	agentBatch = 100
)

// Run starts queued runs until ctx ends: Hub runs up to the concurrency limit, each in its own
// goroutine, and agent runs through the AgentRunner (they take no Hub slot). It also runs the
// event writer. When ctx ends, executing Hub runs are canceled and awaited (up to ShutdownGrace);
// those that stop end failed with error hub_shutdown.
func (s *Service) Run(ctx context.Context) error {
	s.startMu.Lock()
	if s.started {
		s.startMu.Unlock()
		return errors.New("runs: Run called twice")
	}
	s.started = true
	s.startMu.Unlock()

	appCtx, stopApp := context.WithCancel(context.WithoutCancel(ctx))
	appDone := make(chan struct{})
	go func() { defer close(appDone); s.app.run(appCtx) }()
	execCtx, stopExec := context.WithCancelCause(context.WithoutCancel(ctx))

	s.loop(ctx, execCtx)

	stopExec(errStopped)
	idle := make(chan struct{})
	go func() { s.execWG.Wait(); close(idle) }()
	grace := s.clock.NewTimer(ShutdownGrace)
	select {
	case <-idle:
	case <-grace.C():
		s.log.Warn().Msg("runs still executing after the shutdown grace; they will be marked failed at the next start")
	}
	grace.Stop()
	stopApp()
	<-appDone
	return nil
}

func (s *Service) loop(ctx, execCtx context.Context) {
	retry := s.clock.NewTimer(retryDelay)
	retry.Stop()
	defer retry.Stop()
	for {
		if err := s.dispatch(ctx, execCtx); err != nil && ctx.Err() == nil {
			if s.errLog.Allow(s.clock.Now(), time.Minute) {
				s.log.Error().Err(err).Msg("start queued runs; retrying")
			}
			retry.Reset(retryDelay)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-retry.C():
		}
	}
}

// passReport describes one dispatch pass, for the test hook.
type passReport struct {
	free    int      // Hub slots free when the pass began
	started []string // Hub runs it claimed
}

// dispatch starts every run that may start now.
func (s *Service) dispatch(ctx, execCtx context.Context) error {
	var errs []error
	s.mu.Lock()
	free := s.conc - s.active
	s.mu.Unlock()
	var rep passReport
	if s.hookPass != nil {
		rep.free = free
		defer func() { s.hookPass(rep) }()
	}
	if free > 0 {
		// One candidate per job (its oldest queued run), so a job's backlog never crowds out the
		// others; the slack covers candidates taken or canceled since the read.
		cands, err := s.db.Reader().ListQueuedHubRuns(ctx, free+16)
		if err != nil {
			errs = append(errs, err)
		}
		for _, c := range cands {
			if free == 0 {
				break
			}
			ok, err := s.startHub(ctx, execCtx, c)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if ok {
				free--
				rep.started = append(rep.started, c.Run.ID)
			}
		}
	}
	if s.agents != nil {
		errs = append(errs, s.dispatchAgents(ctx))
	}
	return errors.Join(errs...)
}

// dispatchAgents hands queued runs of connected agents to the AgentRunner. Runs of agents that
// are not connected are left alone, without writing anything: Wake at connect time starts them.
func (s *Service) dispatchAgents(ctx context.Context) error {
	agents, err := s.db.Reader().ListQueuedRunAgents(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, agentID := range agents {
		if !s.agents.Connected(agentID) {
			continue
		}
		// One candidate per job, as for Hub runs.
		cands, err := s.db.Reader().ListQueuedAgentRuns(ctx, agentID, agentBatch)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, c := range cands {
			done, ok := s.gateBackup(c.Job.ID)
			if !ok {
				continue // a drill of the job runs; its end wakes us
			}
			started, err := s.agents.Start(ctx, c.Run, c.Job)
			done()
			if err != nil {
				errs = append(errs, fmt.Errorf("start run %s on agent %s: %w", c.Run.ID, agentID, err))
				break
			}
			if !started {
				break // the agent went away; its Wake brings us back
			}
		}
	}
	return errors.Join(errs...)
}

// startHub claims a queued Hub run and executes it in a goroutine. It reports false when the run
// was taken or canceled meanwhile.
func (s *Service) startHub(ctx, execCtx context.Context, c storage.RunWithJob) (bool, error) {
	done, ok := s.gateBackup(c.Job.ID)
	if !ok {
		return false, nil // a drill of the job runs; its end wakes us
	}
	defer done()
	runCtx, cancel := context.WithCancelCause(execCtx)
	// Registered before the claim, so that a cancel committed right after the claim finds it.
	s.mu.Lock()
	s.cancels[c.Run.ID] = cancel
	s.active++
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		delete(s.cancels, c.Run.ID)
		s.active--
		s.mu.Unlock()
		cancel(nil)
	}

	spec, specErr := jobspec.ParseAndValidate([]byte(c.Job.SpecJSON))
	now := s.clock.Now().Unix()
	var rows []storage.RunEvent
	claimed := false
	err := s.db.Write(ctx, func(q storage.Q) error {
		var err error
		if claimed, err = q.ClaimRun(ctx, c.Run.ID, now); err != nil || !claimed {
			return err
		}
		if specErr == nil {
			if err := q.SetRunTargetSnapshot(ctx, c.Run.ID, targetSnapshot(spec)); err != nil {
				return err
			}
		}
		ev, err := eventRow(c.Run.ID, now, Event{Kind: "start", Message: "start"})
		if err != nil {
			return err
		}
		rows = []storage.RunEvent{ev}
		return q.AppendRunEvents(ctx, rows)
	})
	if err != nil || !claimed {
		release()
		return false, err
	}
	s.bus.Publish(rows...)
	run := c.Run
	run.Status, run.StartedAt = storage.RunRunning, now
	s.execWG.Add(1)
	go func() {
		defer s.execWG.Done()
		s.execute(runCtx, run, c.Job, spec, specErr)
		release()
		s.Wake()
	}()
	return true, nil
}

// gateBackup asks the gate (if any) whether a backup of jobID may be claimed now.
func (s *Service) gateBackup(jobID string) (func(), bool) {
	if s.gate == nil {
		return func() {}, true
	}
	return s.gate.BackupStarting(jobID)
}

func (s *Service) execute(ctx context.Context, run storage.Run, job storage.Job, spec *jobspec.Spec, specErr error) {
	log := s.log.With().Str("run_id", run.ID).Str("job_id", job.ID).Logger()
	var out Outcome
	switch {
	case specErr != nil:
		ev := Event{Level: LevelError, Kind: "invalid_spec", Message: specErr.Error()}
		var je *jobspec.Error
		if errors.As(specErr, &je) {
			ev.Fields = map[string]string{"field": je.Field, "reason": je.Reason}
		}
		if err := s.AppendEvents(context.WithoutCancel(ctx), run.ID, ev); err != nil {
			log.Warn().Err(err).Msg("append invalid_spec event")
		}
		out = failed(CodeInvalidSpec, "config", "the job spec is invalid: "+specErr.Error(), "fix the job's settings")
	case s.exec == nil:
		out = failed(CodeNoExecutor, "config", "this Hub has no backup executor", "")
	default:
		out = s.callExecutor(ctx, ExecRequest{
			Run: run, Job: job, Spec: spec,
			Events: runEvents{s: s, runID: run.ID}, Progress: runProgress{s: s, runID: run.ID},
		})
	}
	if errors.Is(context.Cause(ctx), errStopped) && out.Status != storage.RunSuccess {
		out = failed(CodeHubShutdown, "interrupted", "the Hub stopped while this run was running", "run the job again")
	}
	s.finishWithRetry(run.ID, out, log)
}

func (s *Service) callExecutor(ctx context.Context, req ExecRequest) (out Outcome) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error().Str("run_id", req.Run.ID).Str("panic", fmt.Sprint(v)).Msg("executor panicked")
			out = failed(CodeRunFailed, "unknown", "internal error in the backup engine", "")
		}
	}()
	out, err := s.exec.Execute(ctx, req)
	if err != nil {
		return failed(CodeRunFailed, "unknown", err.Error(), "")
	}
	if out.Status == "" {
		out.Status = storage.RunSuccess
	}
	return out
}

// finishWithRetry records a Hub run's result, retrying a few times on database errors. If it
// still fails, the run stays running until the next start's Recover marks it failed.
func (s *Service) finishWithRetry(runID string, out Outcome, log zerolog.Logger) {
	ctx := context.Background()
	delay := time.Second
	for attempt := 1; ; attempt++ {
		_, err := s.finish(ctx, runID, out)
		if err == nil {
			return
		}
		if attempt == 5 {
			log.Error().Err(err).Msg("record the result of a run; giving up until the next start")
			return
		}
		log.Warn().Err(err).Msg("record the result of a run; retrying")
		t := s.clock.NewTimer(delay)
		<-t.C()
		delay *= 2
	}
}

func failed(code, kind, msg, hint string) Outcome {
	return Outcome{Status: storage.RunFailed, Error: &RunError{Code: code, Kind: kind, Message: msg, Hint: hint}}
}

// targetSnapshot is the redacted description of a run's target kept on the run:
// {node_id, target{type, base_url|base_dir, secret_name}}, built like every other (opener.FromSpec).
func targetSnapshot(spec *jobspec.Spec) string {
	b, _ := json.Marshal(opener.FromSpec(opener.HubNode, spec.Target)) // strings only: cannot fail
	return string(b)
}

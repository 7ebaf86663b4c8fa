package runs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bastion-backup/bastion/storage"
)

// Overlap policies.
const (
	OverlapReject = "reject"
	OverlapQueue  = "queue"
)

// Enqueued is a run inserted by EnqueueTx. Pass it to Committed once the transaction commits.
type Enqueued struct {
	Run      storage.Run
	Job      storage.Job
	events   []storage.RunEvent
	finished *Finished // a rejected run
}

// EnqueueTx inserts a run for a trigger of job inside the caller's write transaction, applying
// the overlap policy: when the job already has a queued or running run, "reject" inserts a run
// born terminal (rejected, error overlap_rejected, event rejected, finish hooks run) and "queue"
// inserts a normal queued run. The scheduler uses it to store last_scheduled_at in the same
// transaction. Call Committed after the commit.
func (s *Service) EnqueueTx(ctx context.Context, q storage.Q, job storage.Job, source string) (Enqueued, error) {
	now := s.clock.Now().Unix()
	active, err := q.HasActiveRun(ctx, job.ID)
	if err != nil {
		return Enqueued{}, fmt.Errorf("enqueue run of job %s: %w", job.ID, err)
	}
	run := storage.Run{ID: NewID(), JobID: job.ID, Status: storage.RunQueued, StartedAt: now}
	fields := map[string]string{"source": source}
	ev := Event{Kind: "queued", Message: "queued", Fields: fields}
	reject := active && job.OverlapPolicy == OverlapReject
	if reject {
		run.Status, run.EndedAt, run.Error = storage.RunRejected, ptr(now), ptr(CodeOverlapRejected)
		fields["error"] = CodeOverlapRejected
		ev = Event{Level: LevelWarn, Kind: "rejected", Fields: fields,
			Message: "rejected: the job already has a queued or running run (overlap policy reject)"}
	}
	if err := q.InsertRun(ctx, run); err != nil {
		return Enqueued{}, fmt.Errorf("enqueue run of job %s: %w", job.ID, err)
	}
	row, err := eventRow(run.ID, now, ev)
	if err != nil {
		return Enqueued{}, err
	}
	rows := []storage.RunEvent{row}
	if err := q.AppendRunEvents(ctx, rows); err != nil {
		return Enqueued{}, fmt.Errorf("enqueue run of job %s: %w", job.ID, err)
	}
	e := Enqueued{Run: run, Job: job, events: rows}
	if reject {
		f := Finished{Run: run, Job: job, Outcome: Outcome{Status: storage.RunRejected}}
		if err := s.runHooks(ctx, q, f); err != nil {
			return Enqueued{}, err
		}
		e.finished = &f
	}
	return e, nil
}

// Committed publishes what EnqueueTx wrote and wakes the dispatcher.
func (s *Service) Committed(e Enqueued) {
	s.bus.Publish(e.events...)
	if e.finished != nil {
		s.runAfter(*e.finished)
	}
	if e.Run.Status == storage.RunQueued {
		s.Wake()
	}
}

// Trigger enqueues a run of a job by hand (run now). storage.ErrNotFound when the job does not
// exist, ErrJobArchived when it is archived. The run is queued or, by the overlap policy, rejected.
func (s *Service) Trigger(ctx context.Context, jobID, source string) (storage.Run, error) {
	var e Enqueued
	err := s.db.Write(ctx, func(q storage.Q) error {
		job, err := q.GetJob(ctx, jobID)
		if err != nil {
			return err
		}
		if job.ArchivedAt != nil {
			return fmt.Errorf("run job %s: %w", jobID, ErrJobArchived)
		}
		if err := q.EnsureAgentNotRevoked(ctx, job.AgentID); err != nil {
			return fmt.Errorf("run job %s: %w", jobID, err) // storage.ErrAgentRevoked: nothing could ever run it
		}
		e, err = s.EnqueueTx(ctx, q, job, source)
		return err
	})
	if err != nil {
		return storage.Run{}, err
	}
	s.Committed(e)
	return e.Run, nil
}

// Finish records the result of a run (first result wins; a requested cancel wins over any
// result) with its final event, runs the finish hooks in the same transaction, and then publishes
// and wakes. Finishing a run that has already ended is a no-op, so it is idempotent. Agent results
// come in through it.
func (s *Service) Finish(ctx context.Context, runID string, out Outcome) error {
	_, err := s.finish(ctx, runID, out)
	return err
}

func (s *Service) finish(ctx context.Context, runID string, out Outcome) (bool, error) {
	switch out.Status {
	case storage.RunSuccess, storage.RunFailed, storage.RunCanceled:
	default:
		return false, fmt.Errorf("finish run %s: invalid outcome status %q", runID, out.Status)
	}
	if out.Status == storage.RunFailed && out.Error == nil {
		out.Error = &RunError{Code: CodeRunFailed, Kind: "unknown", Message: "the run failed"}
	}
	if out.Error != nil && out.Error.Code == "" {
		out.Error.Code = CodeRunFailed
	}
	pending := s.peekPending(runID)
	now := s.clock.Now().Unix()
	var (
		applied bool
		ran     bool // the run was running, not still queued, when it ended
		fin     Finished
		rows    []storage.RunEvent
	)
	err := s.db.Write(ctx, func(q storage.Q) error {
		applied, ran, rows = false, false, nil
		if before, err := q.GetRun(ctx, runID); err == nil {
			ran = before.Status == storage.RunRunning
		}
		row := storage.RunFinish{ID: runID, Status: out.Status, EndedAt: now, ProgressJSON: pending}
		switch out.Status {
		case storage.RunSuccess:
			if len(out.Summary) > 0 {
				row.SummaryJSON = ptr(string(out.Summary))
			}
		case storage.RunFailed:
			row.Error = ptr(out.Error.Code)
			if len(out.Summary) > 0 {
				row.SummaryJSON = ptr(string(out.Summary))
			}
		case storage.RunCanceled:
			row.Error = ptr(CodeCanceled)
		}
		run, ok, err := q.FinishRun(ctx, row)
		if errors.Is(err, storage.ErrNotFound) {
			return nil // the run was deleted with its job: nothing left to record
		}
		if err != nil || !ok {
			return err
		}
		job, err := q.GetJob(ctx, run.JobID)
		if err != nil {
			return fmt.Errorf("finish run %s: %w", runID, err)
		}
		ev, err := eventRow(runID, now, finalEvent(run, out))
		if err != nil {
			return err
		}
		rows = []storage.RunEvent{ev}
		if err := q.AppendRunEvents(ctx, rows); err != nil {
			return fmt.Errorf("finish run %s: %w", runID, err)
		}
		fin = Finished{Run: run, Job: job, Outcome: out}
		if run.Status != storage.RunCanceled {
			if err := s.runHooks(ctx, q, fin); err != nil {
				return err
			}
		}
		applied = true
		return nil
	})
	if err != nil {
		return false, err
	}
	s.dropProgress(runID)
	if applied {
		s.bus.Publish(rows...)
		if ran && s.obs != nil && fin.Run.EndedAt != nil {
			s.obs.RunEnded(fin.Run.JobID, fin.Run.Status, time.Duration(*fin.Run.EndedAt-fin.Run.StartedAt)*time.Second)
		}
		if fin.Run.Status != storage.RunCanceled {
			s.runAfter(fin)
		}
		s.Wake()
	}
	return applied, nil
}

// finalEvent is the last event of a run, by the status it ended with.
func finalEvent(run storage.Run, out Outcome) Event {
	switch run.Status {
	case storage.RunSuccess:
		return Event{Kind: "complete", Message: "complete"}
	case storage.RunCanceled:
		fields := map[string]any{}
		if run.CancelReason != nil {
			fields["reason"] = *run.CancelReason
		}
		return Event{Level: LevelWarn, Kind: "canceled", Message: "canceled", Fields: fields}
	}
	e := out.Error
	msg := e.Message
	if msg == "" {
		msg = "failed: " + e.Code
	}
	envelope := map[string]any{
		"schema_version": 1, "code": e.Code, "kind": e.Kind, "retriable": e.Retriable,
		"hint": e.Hint, "message": msg,
	}
	if e.Protocol != "" {
		envelope["transport"] = map[string]string{"protocol": e.Protocol}
	}
	return Event{Level: LevelError, Kind: "failed", Message: msg, Fields: map[string]any{
		"error": e.Code, "error_kind": e.Kind, "hint": e.Hint, "error_envelope": envelope,
	}}
}

func (s *Service) runHooks(ctx context.Context, q storage.Q, f Finished) error {
	for i, h := range s.hooks {
		if err := h(ctx, q, f); err != nil {
			return fmt.Errorf("finish hook %d of run %s: %w", i, f.Run.ID, err)
		}
	}
	return nil
}

func (s *Service) runAfter(f Finished) {
	for _, h := range s.after {
		h(f)
	}
}

func (s *Service) peekPending(runID string) *string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.progress[runID]; st != nil {
		return st.pending
	}
	return nil
}

// Cancel requests the cancel of a run and returns it as stored afterwards. The request is
// recorded once (a repeat, or a cancel of a finished run, changes nothing). A queued run ends
// canceled at once; a running one stays running with event cancel_requested while its executor
// (the Hub's, through its context, or the agent's, through AgentRunner.Cancel) winds down, and
// ends canceled whatever result it reports. storage.ErrNotFound when the run does not exist.
func (s *Service) Cancel(ctx context.Context, runID string, byUserID *int64, reason *string) (storage.Run, error) {
	now := s.clock.Now().Unix()
	var (
		run     storage.Run
		job     storage.Job
		rows    []storage.RunEvent
		changed bool
	)
	err := s.db.Write(ctx, func(q storage.Q) error {
		rows, changed = nil, false
		ok, err := q.RequestRunCancel(ctx, runID, now, byUserID, reason)
		if err != nil {
			return err
		}
		if run, err = q.GetRun(ctx, runID); err != nil || !ok {
			return err
		}
		changed = true
		if job, err = q.GetJob(ctx, run.JobID); err != nil {
			return fmt.Errorf("cancel run %s: %w", runID, err)
		}
		ev := Event{Level: LevelWarn, Kind: "cancel_requested", Message: "cancel requested"}
		if reason != nil {
			ev.Fields = map[string]string{"reason": *reason}
		}
		if run.Status == storage.RunQueued {
			if run, _, err = q.FinishRun(ctx, storage.RunFinish{ID: runID, Status: storage.RunCanceled, EndedAt: now, Error: ptr(CodeCanceled)}); err != nil {
				return err
			}
			ev = finalEvent(run, Outcome{})
		}
		row, err := eventRow(runID, now, ev)
		if err != nil {
			return err
		}
		rows = []storage.RunEvent{row}
		return q.AppendRunEvents(ctx, rows)
	})
	if err != nil {
		return storage.Run{}, fmt.Errorf("cancel run %s: %w", runID, err)
	}
	if !changed {
		return run, nil
	}
	s.bus.Publish(rows...)
	if run.Status != storage.RunRunning {
		s.dropProgress(runID)
		s.Wake()
		return run, nil
	}
	if job.AgentID == nil {
		s.mu.Lock()
		cancel := s.cancels[runID]
		s.mu.Unlock()
		if cancel != nil {
			cancel(errCancelRequested)
		}
	} else if s.agents != nil {
		// Best effort: the agents side keeps the intent and re-sends it on reconnect.
		if err := s.agents.Cancel(ctx, *job.AgentID, runID); err != nil {
			s.log.Warn().Err(err).Str("run_id", runID).Str("agent_id", *job.AgentID).Msg("send cancel to agent")
		}
	}
	return run, nil
}

// Recover finalizes the runs a previous Hub process left running: Hub-executed runs (and agent
// runs without an open agent task) become failed with error hub_restarted. Queued runs stay
// queued. Call it once at start, before Run.
func (s *Service) Recover(ctx context.Context) (int, error) {
	stale, err := s.db.Reader().ListInterruptedRuns(ctx)
	if err != nil {
		return 0, fmt.Errorf("recover interrupted runs: %w", err)
	}
	n := 0
	var errs []error
	for _, r := range stale {
		applied, err := s.finish(ctx, r.ID, Outcome{Status: storage.RunFailed, Error: &RunError{
			Code: CodeHubRestarted, Kind: "interrupted",
			Message: "the Hub stopped while this run was running, so it did not finish",
			Hint:    "run the job again; partial data on the target is cleaned up later",
		}})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if applied {
			n++
			s.log.Warn().Str("run_id", r.ID).Str("job_id", r.JobID).Msg("run interrupted by a Hub restart marked failed")
		}
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("recover interrupted runs: %w", err)
	}
	return n, nil
}

// errRunDeleted is the cancel cause of a Hub run whose job was deleted.
var errRunDeleted = errors.New("the run's job was deleted")

// Abort stops the work on runs that no longer exist because their job was deleted (the rows went
// with it by cascade): a Hub execution's context is canceled, an agent is asked to cancel. Call it
// after the delete commits, with the runs that were queued or running.
func (s *Service) Abort(ctx context.Context, job storage.Job, runIDs ...string) {
	for _, id := range runIDs {
		s.mu.Lock()
		cancel := s.cancels[id]
		s.dropProgressLocked(id)
		s.mu.Unlock()
		if cancel != nil {
			cancel(errRunDeleted)
		}
		if job.AgentID != nil && s.agents != nil {
			if err := s.agents.Cancel(ctx, *job.AgentID, id); err != nil {
				s.log.Warn().Err(err).Str("run_id", id).Str("agent_id", *job.AgentID).Msg("send cancel of a deleted run to its agent")
			}
		}
	}
}

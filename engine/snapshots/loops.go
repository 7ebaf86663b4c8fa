package snapshots

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/internal/periodic"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/storage"
)

const (
	batchSize = 20
	// maxSleep caps every sleep so that a suspend or clock step is noticed; cleanupScan is how
	// often the cleanup loop looks for runs that have become old enough.
	maxSleep      = 5 * time.Minute
	cleanupScan   = time.Hour
	cleanupBatch  = 200
	retentionTick = time.Hour
)

// RunDeletes is the snapshot-delete loop: it processes due tasks in batches and otherwise sleeps
// until the next one is due or WakeDeletes is called.
func (s *Service) RunDeletes(ctx context.Context) error {
	return s.runQueue(ctx, storage.DeleteQueue, s.deleteWake, s.deleteOne, nil)
}

// RunCleanup is the incomplete-run cleanup loop; with cleanup disabled it only waits for shutdown.
func (s *Service) RunCleanup(ctx context.Context) error {
	if s.cleanupAfter <= 0 {
		<-ctx.Done()
		return nil
	}
	return s.runQueue(ctx, storage.CleanupQueue, s.cleanupWake, s.cleanupOne, s.discoverCleanup)
}

// runQueue drives one queue. discover, when set, adds new tasks at the start of each pass.
func (s *Service) runQueue(ctx context.Context, tq storage.TaskQueue, wakeC <-chan struct{},
	process func(context.Context, storage.Task) outcome, discover func(context.Context) error) error {
	log := s.log.With().Str("queue", tq.Name()).Logger()
	now := s.clock.Now()
	// Whatever was running when the Hub stopped was interrupted: retry it now.
	if n, err := s.db.Writer().RecoverStuckTasks(ctx, tq, now.Unix()+1, now.Unix(), now.Unix()); err != nil {
		return err
	} else if n > 0 {
		log.Info().Int64("tasks", n).Msg("retrying tasks interrupted by a restart")
	}
	t := s.clock.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wakeC:
		case <-t.C():
		}
		full := s.pass(ctx, tq, log, process, discover)
		t.Reset(s.untilNext(ctx, tq, full, discover != nil, log))
	}
}

func (s *Service) pass(ctx context.Context, tq storage.TaskQueue, log zerolog.Logger,
	process func(context.Context, storage.Task) outcome, discover func(context.Context) error) bool {
	now := s.clock.Now()
	if _, err := s.db.Writer().RecoverStuckTasks(ctx, tq, now.Add(-StuckAfter).Unix(), now.Add(time.Minute).Unix(), now.Unix()); err != nil {
		log.Warn().Err(err).Msg("recover stuck tasks")
	}
	if discover != nil {
		if err := discover(ctx); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("look for new tasks")
		}
	}
	var tasks []storage.Task
	err := s.db.Write(ctx, func(q storage.Q) error {
		var err error
		tasks, err = q.ClaimDueTasks(ctx, tq, now.Unix(), batchSize)
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			log.Warn().Err(err).Msg("claim tasks")
		}
		return false
	}
	for _, task := range tasks {
		if ctx.Err() != nil {
			return false // claimed tasks are recovered at next start
		}
		o := process(ctx, task)
		if err := s.record(ctx, tq, task, o); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Str("run_id", task.RunID).Msg("record task outcome")
		}
	}
	return len(tasks) == batchSize
}

// untilNext is how long to sleep: no time when the last batch was full, else until the earliest
// due task, capped.
func (s *Service) untilNext(ctx context.Context, tq storage.TaskQueue, full, scans bool, log zerolog.Logger) time.Duration {
	if full {
		return 0
	}
	limit := maxSleep
	if scans {
		limit = min(limit, cleanupScan)
	}
	at, ok, err := s.db.Reader().NextTaskDue(ctx, tq)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn().Err(err).Msg("find next due task")
		}
		return time.Minute
	}
	if !ok {
		return limit
	}
	return min(max(time.Unix(at, 0).Sub(s.clock.Now()), 0), limit)
}

// outcome is what processing a task came to.
type outcome struct {
	snapshotStatus string // "" leaves the snapshot alone (cleanup)
	err            error
	event, message string
}

func (s *Service) deleteOne(ctx context.Context, task storage.Task) outcome {
	rt, err := runTarget(task)
	if err != nil {
		return outcome{err: err}
	}
	tgt, err := s.opener.Open(ctx, rt)
	if err != nil {
		return outcome{err: err}
	}
	res, err := tgt.DeleteRun(ctx, targets.RunRef{JobID: task.JobID, RunID: task.RunID})
	switch {
	case err != nil:
		return outcome{err: err}
	case res == targets.DeleteNotFound:
		return outcome{snapshotStatus: storage.SnapshotMissing, event: "missing", message: "snapshot was already gone from " + tgt.Location(targets.RunRef{JobID: task.JobID, RunID: task.RunID})}
	}
	return outcome{snapshotStatus: storage.SnapshotDeleted, event: "deleted", message: "snapshot deleted from " + tgt.Location(targets.RunRef{JobID: task.JobID, RunID: task.RunID})}
}

func (s *Service) cleanupOne(ctx context.Context, task storage.Task) outcome {
	rt, err := runTarget(task)
	if err != nil {
		return outcome{err: err}
	}
	tgt, err := s.opener.Open(ctx, rt)
	if err != nil {
		return outcome{err: err}
	}
	ref := targets.RunRef{JobID: task.JobID, RunID: task.RunID}
	res, err := tgt.CleanupRun(ctx, ref)
	if err != nil {
		return outcome{err: err}
	}
	if res == targets.CleanupSkipComplete {
		// Only runs that did not succeed are cleaned, so complete data here belongs to no snapshot:
		// a success that lost to a cancel, a result that arrived after the run had been failed, or
		// a crash between the last write and recording the success. Nothing would ever list, keep
		// or delete it, so it goes too.
		if _, err := tgt.DeleteRun(ctx, ref); err != nil {
			return outcome{err: err}
		}
		return outcome{event: "orphan_removed", message: "removed the complete data of a run that did not succeed (it was never a snapshot)"}
	}
	msgs := map[targets.CleanupResult]string{
		targets.CleanupDeleted:      "removed what the run left on its target",
		targets.CleanupSkipNotFound: "nothing left on the target",
	}
	return outcome{event: string(res), message: msgs[res]}
}

// record writes a task's outcome, its event and the snapshot's status in one transaction.
func (s *Service) record(ctx context.Context, tq storage.TaskQueue, task storage.Task, o outcome) error {
	now := s.clock.Now()
	return s.db.Write(ctx, func(q storage.Q) error {
		if o.err == nil {
			if ok, err := q.FinishTask(ctx, tq, task.RunID, storage.TaskDone, now.Unix(), nil, nil, now.Unix()); err != nil || !ok {
				return err
			}
			if o.snapshotStatus != "" {
				if err := q.SetSnapshotStatus(ctx, task.RunID, o.snapshotStatus, nil, nil, now.Unix()); err != nil {
					return err
				}
			}
			return q.AppendTaskEvent(ctx, tq, task.RunID, storage.TaskEvent{TS: now.Unix(), Level: "info", Kind: o.event, Message: o.message})
		}
		kind := targets.KindOf(o.err)
		msg := o.err.Error()
		delay, status := retryAfter(kind, task.RunID, task.Attempts)
		snap := storage.SnapshotDeleting
		if status == storage.TaskBlocked {
			snap = storage.SnapshotError
		}
		if task.Attempts >= MaxAttempts || now.Sub(time.Unix(task.CreatedAt, 0)) >= MaxAge {
			status, snap = storage.TaskAbandoned, storage.SnapshotError
		}
		if ok, err := q.FinishTask(ctx, tq, task.RunID, status, now.Add(delay).Unix(), &kind, &msg, now.Unix()); err != nil || !ok {
			return err
		}
		if tq == storage.DeleteQueue {
			if err := q.SetSnapshotStatus(ctx, task.RunID, snap, &kind, &msg, now.Unix()); err != nil {
				return err
			}
		}
		return q.AppendTaskEvent(ctx, tq, task.RunID, storage.TaskEvent{TS: now.Unix(), Level: "warn", Kind: status,
			Message: msg})
	})
}

// discoverCleanup turns failed and canceled runs older than the cleanup age into cleanup tasks.
func (s *Service) discoverCleanup(ctx context.Context) error {
	now := s.clock.Now()
	cands, err := s.db.Reader().ListCleanupCandidates(ctx, now.Add(-s.cleanupAfter).Unix(), cleanupBatch)
	if err != nil || len(cands) == 0 {
		return err
	}
	return s.db.Write(ctx, func(q storage.Q) error {
		for _, c := range cands {
			rt, err := runTarget(c)
			if err != nil {
				continue // nothing usable to clean with; never block the others
			}
			c.TargetType = rt.Target.Type
			c.NextAttemptAt, c.CreatedAt = now.Unix(), now.Unix()
			if _, err := q.EnqueueTask(ctx, storage.CleanupQueue, c); err != nil {
				return err
			}
		}
		return nil
	})
}

// RunRetention applies every live job's retention policy hourly.
func (s *Service) RunRetention(ctx context.Context) error {
	return periodic.Run(ctx, s.clock, retentionTick, retentionTick, s.retentionPass)
}

func (s *Service) retentionPass(ctx context.Context) {
	jobs, err := s.db.Reader().ListLiveJobSpecs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("list jobs for retention")
		}
		return
	}
	for _, j := range jobs {
		spec, err := jobspec.Parse([]byte(j.SpecJSON))
		if err != nil || !spec.Retention.Enabled {
			continue
		}
		res, err := s.Apply(ctx, j.ID, &spec.Retention)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn().Err(err).Str("job_id", j.ID).Msg("apply retention")
			}
			continue
		}
		if len(res.Enqueued) > 0 || res.SkippedDueToLimits > 0 {
			s.log.Info().Str("job_id", j.ID).Int("queued", len(res.Enqueued)).Int("skipped_due_to_limits", res.SkippedDueToLimits).
				Msg("retention queued snapshot deletions")
		}
	}
}

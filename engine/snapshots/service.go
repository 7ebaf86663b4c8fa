package snapshots

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/schedule"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/storage"
)

// Opener gives the target a stored run target points at. For a run on an agent it returns a
// Target that works through that agent, or an error of kind targets.KindNetwork when the agent is
// not connected (the task is then retried).
type Opener interface {
	Open(ctx context.Context, rt targets.RunTarget) (targets.Target, error)
}

// Errors of manual actions.
var (
	ErrPinned   = errors.New("snapshot is pinned")
	ErrNotFound = errors.New("snapshot not found")
)

// Service owns snapshot deletion, retention and incomplete-run cleanup.
type Service struct {
	db     *storage.DB
	clock  clock.Clock
	opener Opener
	log    zerolog.Logger
	// cleanupAfter is how old a failed run must be before its leftovers are removed; 0 disables.
	cleanupAfter time.Duration

	deleteWake, cleanupWake chan struct{}
}

// Config configures New.
type Config struct {
	DB                    *storage.DB
	Clock                 clock.Clock
	Opener                Opener
	Logger                zerolog.Logger
	IncompleteCleanupDays int
}

// New returns a Service; run its loops with RunDeletes, RunCleanup and RunRetention.
func New(c Config) *Service {
	return &Service{
		db: c.DB, clock: c.Clock, opener: c.Opener,
		log:          c.Logger.With().Str("component", "snapshots").Logger(),
		cleanupAfter: time.Duration(c.IncompleteCleanupDays) * 24 * time.Hour,
		deleteWake:   make(chan struct{}, 1), cleanupWake: make(chan struct{}, 1),
	}
}

// WakeDeletes makes the delete loop look for due work now.
func (s *Service) WakeDeletes() { wake(s.deleteWake) }

// WakeCleanup makes the cleanup loop look for due work now.
func (s *Service) WakeCleanup() { wake(s.cleanupWake) }

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// RequestDelete queues the deletion of a snapshot. A snapshot already gone is a no-op; a pinned one
// needs force.
func (s *Service) RequestDelete(ctx context.Context, jobID, runID string, force bool) error {
	now := s.clock.Now().Unix()
	err := s.db.Write(ctx, func(q storage.Q) error {
		a, err := q.GetRunArtifact(ctx, jobID, runID)
		if errors.Is(err, storage.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		switch {
		case a.Status == storage.SnapshotDeleted || a.Status == storage.SnapshotMissing:
			return nil
		case a.PinnedAt != nil && !force:
			return ErrPinned
		}
		_, err = s.enqueueDelete(ctx, q, a, "manual", now)
		return err
	})
	if err == nil {
		s.WakeDeletes()
	}
	return err
}

// enqueueDelete adds the delete task (or revives an abandoned or ignored one) and marks the
// snapshot deleting.
func (s *Service) enqueueDelete(ctx context.Context, q storage.Q, a storage.RunArtifact, reason string, now int64) (bool, error) {
	added, err := q.EnqueueTask(ctx, storage.DeleteQueue, storage.Task{RunID: a.RunID, JobID: a.JobID, NodeID: a.NodeID,
		TargetType: a.TargetType, TargetSnapshotJSON: a.TargetSnapshotJSON, Reason: reason, NextAttemptAt: now, CreatedAt: now})
	if err != nil {
		return false, err
	}
	if !added {
		t, err := q.GetTask(ctx, storage.DeleteQueue, a.RunID)
		if err != nil {
			return false, err
		}
		if t.Status == storage.TaskAbandoned || t.Status == storage.TaskIgnored || t.Status == storage.TaskDone {
			if err := q.RetryTaskNow(ctx, storage.DeleteQueue, a.RunID, now); err != nil {
				return false, err
			}
		}
	}
	if err := q.AppendTaskEvent(ctx, storage.DeleteQueue, a.RunID, storage.TaskEvent{TS: now, Level: "info",
		Kind: reason + "_queued", Message: "snapshot deletion requested (" + reason + ")"}); err != nil {
		return false, err
	}
	return added, q.SetSnapshotStatus(ctx, a.RunID, storage.SnapshotDeleting, nil, nil, now)
}

// ArchiveCascadeLimit bounds how many deletes archiving one job queues.
const ArchiveCascadeLimit = 1000

// CascadeArchive queues the deletion of an archived job's unpinned present snapshots, newest
// first, walking pages by keyset so none is skipped. It returns how many were queued.
func (s *Service) CascadeArchive(ctx context.Context, jobID string) (int, error) {
	now := s.clock.Now().Unix()
	queued := 0
	cur := storage.FirstSnapshotPage
	for queued < ArchiveCascadeLimit {
		page, err := s.db.Reader().ListSnapshots(ctx, jobID, storage.SnapshotPresent, cur, 200)
		if err != nil {
			return queued, err
		}
		if len(page) == 0 {
			break
		}
		err = s.db.Write(ctx, func(q storage.Q) error {
			for _, a := range page {
				if a.PinnedAt != nil || queued >= ArchiveCascadeLimit {
					continue
				}
				if _, err := s.enqueueDelete(ctx, q, a, "archive", now); err != nil {
					return err
				}
				queued++
			}
			return nil
		})
		if err != nil {
			return queued, err
		}
		last := page[len(page)-1]
		cur = storage.SnapshotCursor{EndedAt: last.EndedAt, RunID: last.RunID}
	}
	if queued > 0 {
		s.WakeDeletes()
	}
	return queued, nil
}

// Preview returns what retention would do to a job now, changing nothing. policy overrides the
// job's own retention when not nil.
func (s *Service) Preview(ctx context.Context, jobID string, policy *jobspec.Retention) (Plan, error) {
	pol, loc, err := s.policyOf(ctx, jobID, policy)
	if err != nil {
		return Plan{}, err
	}
	cands, err := s.db.Reader().ListRetentionCandidates(ctx, jobID, MaxRetentionCandidates)
	if err != nil {
		return Plan{}, err
	}
	return Select(cands, pol, s.clock.Now(), loc), nil
}

// MaxRetentionCandidates bounds how many snapshots one retention pass looks at.
const MaxRetentionCandidates = 20000

// ApplyResult is what a retention pass did to one job.
type ApplyResult struct {
	Enqueued           []string `json:"enqueued"`
	AlreadyExists      int      `json:"already_exists"`
	SkippedDueToLimits int      `json:"skipped_due_to_limits"`
}

// Apply runs retention for a job: the snapshots its policy would delete are queued, oldest first,
// at most min(max_delete_per_tick, max_delete_per_day − deletes retention queued since 00:00 UTC).
func (s *Service) Apply(ctx context.Context, jobID string, policy *jobspec.Retention) (ApplyResult, error) {
	pol, loc, err := s.policyOf(ctx, jobID, policy)
	if err != nil || !pol.Enabled {
		return ApplyResult{}, err
	}
	now := s.clock.Now()
	midnight := time.Date(now.UTC().Year(), now.UTC().Month(), now.UTC().Day(), 0, 0, 0, 0, time.UTC).Unix()
	var res ApplyResult
	err = s.db.Write(ctx, func(q storage.Q) error {
		cands, err := q.ListRetentionCandidates(ctx, jobID, MaxRetentionCandidates)
		if err != nil {
			return err
		}
		plan := Select(cands, pol, now, loc)
		today, err := q.CountRetentionDeletesSince(ctx, jobID, midnight)
		if err != nil {
			return err
		}
		allowed := min(pol.MaxDeletePerTick, pol.MaxDeletePerDay-today)
		byID := map[string]storage.RunArtifact{}
		for _, a := range cands {
			byID[a.RunID] = a
		}
		for _, d := range plan.Delete {
			if len(res.Enqueued) >= allowed {
				res.SkippedDueToLimits++
				continue
			}
			added, err := s.enqueueDelete(ctx, q, byID[d.RunID], "retention", now.Unix())
			if err != nil {
				return err
			}
			if added {
				res.Enqueued = append(res.Enqueued, d.RunID)
			} else {
				res.AlreadyExists++
			}
		}
		return nil
	})
	if err != nil {
		return ApplyResult{}, fmt.Errorf("apply retention to job %s: %w", jobID, err)
	}
	if len(res.Enqueued) > 0 {
		s.WakeDeletes()
	}
	if res.Enqueued == nil {
		res.Enqueued = []string{}
	}
	return res, nil
}

// policyOf returns the policy retention runs with (override, else the job's own) and the job's
// timezone, in which GFS periods are counted.
func (s *Service) policyOf(ctx context.Context, jobID string, override *jobspec.Retention) (jobspec.Retention, *time.Location, error) {
	j, err := s.db.Reader().GetJob(ctx, jobID)
	if err != nil {
		return jobspec.Retention{}, nil, err
	}
	loc := time.UTC
	if j.ScheduleTimezone != "" {
		loc, err = schedule.LoadLocation(j.ScheduleTimezone)
	}
	if err != nil {
		// The API validates the zone; one this machine cannot load (tzdata changed) still
		// lets retention run, in UTC, rather than never.
		s.log.Warn().Err(err).Str("job_id", jobID).Msg("job timezone unknown; counting retention periods in UTC")
		loc = time.UTC
	}
	if override != nil {
		return *override, loc, nil
	}
	spec, err := jobspec.Parse([]byte(j.SpecJSON))
	if err != nil {
		return jobspec.Retention{}, nil, fmt.Errorf("job %s has an unreadable spec: %w", jobID, err)
	}
	return spec.Retention, loc, nil
}

func runTarget(task storage.Task) (targets.RunTarget, error) {
	var rt targets.RunTarget
	if err := json.Unmarshal([]byte(task.TargetSnapshotJSON), &rt); err != nil {
		return rt, &targets.Error{Kind: targets.KindConfig, Code: "invalid_target_snapshot",
			Op: "read stored target of run " + task.RunID, Err: err}
	}
	if rt.NodeID == "" {
		rt.NodeID = task.NodeID
	}
	return rt, nil
}

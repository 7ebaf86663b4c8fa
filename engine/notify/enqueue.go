package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/storage"
)

// RunInfo identifies a run that has ended.
type RunInfo struct {
	ID     string
	Status string // success | failed | rejected notify; anything else (canceled) does not
}

// JobNotifications is the notifications block of a job spec. Mode "inherit" (also when empty)
// selects every enabled destination; "custom" only the named destinations that are enabled.
type JobNotifications = jobspec.Notifications

// Notification modes.
const (
	ModeInherit = jobspec.NotifyInherit
	ModeCustom  = jobspec.NotifyCustom
)

// Notifies reports whether a run ending in status is notified. Rejected runs (refused by the
// overlap policy) are, as the templates' "Bastion backup rejected" promises; canceled runs are
// not: someone asked for them to stop.
func Notifies(status string) bool {
	return status == storage.RunSuccess || status == storage.RunFailed || status == storage.RunRejected
}

// EnqueueFinished is EnqueueForRun for the run queue's finish hook: it takes the run as stored
// and its job's spec JSON. A spec that does not parse (an old or hand-edited job) is notified as
// inherit with a warning: a finish hook's error would hold the run's finalization back.
//
//	OnFinished:    func(ctx, q, f) error { _, err := n.EnqueueFinished(ctx, q, f.Run, f.Job.SpecJSON); return err }
//	AfterFinished: func(runs.Finished) { n.Wake() }
func (s *Service) EnqueueFinished(ctx context.Context, q storage.Q, run storage.Run, jobSpecJSON string) (int, error) {
	var spec JobNotifications
	if !Notifies(run.Status) {
		return 0, nil
	}
	if parsed, err := jobspec.Parse([]byte(jobSpecJSON)); err != nil {
		s.log.Warn().Str("run_id", run.ID).Str("job_id", run.JobID).Err(err).
			Msg("job spec does not parse; notifying every enabled destination")
	} else {
		spec = parsed.Notifications
	}
	return s.EnqueueForRun(ctx, q, RunInfo{ID: run.ID, Status: run.Status}, spec)
}

// EnqueueForRun queues one notification per destination the run should be reported to, and
// returns how many rows it inserted. Call it inside the write transaction that stores the run's
// terminal status, so both commit together, then call Wake after the commit.
//
// Nothing is queued when notifications are off, the status does not notify, or the stored
// settings do not decode (logged, at most once a minute). inherit selects
// every enabled destination of every enabled channel; custom selects the job's named
// destinations that exist and are enabled (others are ignored). Repeating the call for the same
// run inserts nothing new (UNIQUE(run_id, event_kind, operation_id, channel, secret_name)), so it
// can never send twice.
func (s *Service) EnqueueForRun(ctx context.Context, q storage.Q, run RunInfo, spec JobNotifications) (int, error) {
	if !Notifies(run.Status) {
		return 0, nil
	}
	return s.enqueue(ctx, q, run.ID, storage.NotificationEventRun, "", spec)
}

// EnqueueVerifyFailed queues the verify_failed notifications of a failed drill (operation op) of
// run runID's snapshot, to the destinations the job's spec selects, like a failed run's. Call it
// inside the transaction that ends the operation, then Wake. A repeat inserts nothing.
func (s *Service) EnqueueVerifyFailed(ctx context.Context, q storage.Q, op storage.Operation, runID, jobSpecJSON string) (int, error) {
	var spec JobNotifications
	if parsed, err := jobspec.Parse([]byte(jobSpecJSON)); err == nil {
		spec = parsed.Notifications
	}
	return s.enqueue(ctx, q, runID, storage.NotificationEventVerifyFailed, op.ID, spec)
}

func (s *Service) enqueue(ctx context.Context, q storage.Q, runID, eventKind, opID string, spec JobNotifications) (int, error) {
	run := RunInfo{ID: runID}
	set, err := loadSettings(ctx, q)
	if errors.Is(err, errSettingsUnreadable) {
		// Failing would roll back the run's final write, and every later run's, until someone
		// saves the settings again: the run's report is lost instead, loudly.
		if s.badSettingsLog.Allow(s.clock.Now(), time.Minute) {
			s.log.Error().Err(err).Str("run_id", run.ID).
				Msg("notification settings are unreadable; runs are not notified until the settings are saved again")
		}
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("queue notifications for run %s: %w", run.ID, err)
	}
	if !set.Enabled {
		return 0, nil
	}
	custom := spec.Mode == ModeCustom
	if !custom && spec.Mode != "" && spec.Mode != ModeInherit {
		// The job spec validator rejects this; an old spec must not lose its run's report.
		s.log.Warn().Str("run_id", run.ID).Str("mode", spec.Mode).Msg("unknown notifications mode; using inherit")
	}
	now := s.clock.Now().Unix()
	inserted := 0
	for _, ch := range AllChannels {
		if !set.ChannelEnabled(ch) {
			continue
		}
		names, err := q.EnabledNotificationDestinations(ctx, secrets.HubNode, SecretKindOf(ch))
		if err != nil {
			return inserted, fmt.Errorf("queue notifications for run %s: %w", run.ID, err)
		}
		if custom {
			wanted := spec.Destinations[ch]
			names = slices.DeleteFunc(names, func(n string) bool { return !slices.Contains(wanted, n) })
		}
		for _, name := range names {
			ok, err := q.InsertNotification(ctx, storage.Notification{
				ID: uuid.NewString(), RunID: run.ID, Channel: ch, SecretName: name,
				Status: storage.NotificationQueued, NextAttemptAt: now, CreatedAt: now, UpdatedAt: now,
				EventKind: eventKind, OperationID: opID,
			})
			if err != nil {
				return inserted, fmt.Errorf("queue notifications for run %s: %w", run.ID, err)
			}
			if ok {
				inserted++
			}
		}
	}
	return inserted, nil
}

// ValidateJobNotifications checks that every destination list of a job spec's notifications is
// named after a channel; it returns the field and a message for the API's invalid_spec, or "".
// Package jobspec knows no channel, so the Hub calls this when a job is saved.
func ValidateJobNotifications(n JobNotifications) (field, message string) {
	names := make([]string, 0, len(n.Destinations))
	for ch := range n.Destinations {
		names = append(names, ch)
	}
	slices.Sort(names)
	for _, ch := range names {
		if !ValidChannel(ch) {
			return "spec.notifications." + ch, fmt.Sprintf("spec.notifications.%s is not a notification channel (channels: %s)",
				ch, strings.Join(AllChannels, ", "))
		}
	}
	return "", ""
}

package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/notify/channel"
	"github.com/bastion-backup/bastion/engine/notify/send"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/storage"
)

// Run event kinds.
const (
	EventNotifySent   = "notify_sent"
	EventNotifyFailed = "notify_failed"
)

// outcome of one attempt.
type outcome struct {
	sent        bool
	cancel      string // a cancel reason
	gone        bool   // the run, and so the row, no longer exists
	interrupted bool   // shutdown during the attempt
	err         error  // the attempt failed
}

// errInvalidDestination marks a stored payload that no longer validates.
var errInvalidDestination = errors.New("invalid destination")

// deliver makes one attempt for a claimed row and records its outcome.
func (s *Service) deliver(ctx context.Context, n storage.Notification) {
	log := s.log.With().Str("notification_id", n.ID).Str("run_id", n.RunID).
		Str("channel", n.Channel).Str("destination", n.SecretName).Logger()
	out := s.attempt(ctx, n)
	if out.interrupted {
		s.release(n, log)
		return
	}
	// The outcome is recorded even if shutdown began meanwhile: a message that was delivered
	// must not be sent again after the restart.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.record(rctx, n, out, log); err != nil {
		log.Error().Err(err).Msg("record notification outcome")
	}
}

// recheck applies the switches and the destination's state at this moment: a reason to cancel,
// or "".
func (s *Service) recheck(ctx context.Context, q storage.Q, channel, name string) (string, error) {
	_, reason, err := s.recheckSettings(ctx, q, channel, name)
	return reason, err
}

// recheckSettings is recheck that also returns the settings it read.
func (s *Service) recheckSettings(ctx context.Context, q storage.Q, channel, name string) (Settings, string, error) {
	set, err := loadSettings(ctx, q)
	if err != nil {
		return Settings{}, "", err
	}
	switch {
	case !set.Enabled:
		return set, ReasonNotificationsDisabled, nil
	case !set.ChannelEnabled(channel):
		return set, ReasonChannelDisabled, nil
	}
	exists, enabled, err := q.NotificationDestinationState(ctx, secrets.HubNode, SecretKindOf(channel), name)
	switch {
	case err != nil:
		return set, "", err
	case !exists:
		return set, ReasonDestinationDeleted, nil
	case !enabled:
		return set, ReasonDestinationDisabled, nil
	}
	return set, "", nil
}

func (s *Service) attempt(ctx context.Context, n storage.Notification) outcome {
	var (
		reason string
		run    storage.NotificationRun
		op     storage.Operation
		set    Settings
	)
	err := s.db.Read(ctx, func(q storage.Q) error {
		var err error
		if set, reason, err = s.recheckSettings(ctx, q, n.Channel, n.SecretName); err != nil || reason != "" {
			return err
		}
		if run, err = q.GetNotificationRun(ctx, n.RunID); err != nil {
			return err
		}
		if n.EventKind == storage.NotificationEventVerifyFailed {
			op, err = q.GetOperation(ctx, n.OperationID)
		}
		return err
	})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return outcome{gone: true}
	case err != nil:
		return s.failedOrInterrupted(ctx, err)
	case reason != "":
		return outcome{cancel: reason}
	}

	d, ok := s.channels.Get(n.Channel)
	if !ok {
		// A row of a channel this Hub no longer has (written by a newer version, say).
		return outcome{err: fmt.Errorf("%w %s/%s: unknown channel", errInvalidDestination, n.Channel, n.SecretName)}
	}
	raw, err := s.secrets.Get(ctx, secrets.HubNode, d.SecretKind(), n.SecretName)
	if isSecretNotFound(err) {
		return outcome{cancel: ReasonDestinationDeleted}
	}
	if err != nil {
		return s.failedOrInterrupted(ctx, fmt.Errorf("read destination secret: %w", err))
	}
	dest, err := d.DecodeDestination(raw)
	if err != nil {
		// Validation messages never echo the payload.
		return outcome{err: fmt.Errorf("%w %s/%s: %s", errInvalidDestination, n.Channel, n.SecretName, err.Error())}
	}
	if err := d.Send(ctx, buildMessage(n, run, op, set.Templates, s.baseURL, s.clock.Now(), dest)); err != nil {
		return s.failedOrInterrupted(ctx, err)
	}
	return outcome{sent: true}
}

// buildMessage renders row n's message about run (op: its failed drill, for verify_failed).
func buildMessage(n storage.Notification, run storage.NotificationRun, op storage.Operation, t Templates,
	baseURL string, now time.Time, dest any) channel.Message {
	v, event := BuildValues(run, baseURL), channel.EventRunFinished
	if n.EventKind == storage.NotificationEventVerifyFailed {
		v, event = BuildDrillValues(run, op, baseURL), channel.EventVerifyFailed
	}
	return channel.Message{Event: event, DeliveryID: n.ID, Date: now, Destination: dest, Values: v,
		Text: renderAll(t.forEvent(n.EventKind), v)}
}

func (s *Service) failedOrInterrupted(ctx context.Context, err error) outcome {
	if ctx.Err() != nil {
		return outcome{interrupted: true, err: err}
	}
	return outcome{err: err}
}

// record writes the outcome, with its run event, in one transaction.
func (s *Service) record(ctx context.Context, n storage.Notification, out outcome, log zerolog.Logger) error {
	if out.gone {
		log.Debug().Msg("run deleted before its notification was sent")
		return nil
	}
	now := s.clock.Now()
	lease := *n.LeaseUntil
	var (
		events  []storage.RunEvent
		applied bool
	)
	err := s.db.Write(ctx, func(q storage.Q) error {
		events, applied = nil, false
		var o storage.NotificationOutcome
		switch {
		case out.sent:
			at := now.Unix()
			o = storage.NotificationOutcome{Status: storage.NotificationSent, Attempts: n.Attempts + 1, SentAt: &at}
			events = append(events, runEvent(n.RunID, now, "info", EventNotifySent, map[string]any{
				"channel": n.Channel, "secret_name": n.SecretName, "attempts": n.Attempts + 1, "notification_id": n.ID,
			}))
		case out.cancel != "":
			reason := out.cancel
			o = storage.NotificationOutcome{Status: storage.NotificationCanceled, Attempts: n.Attempts, LastError: &reason}
		default:
			attempts := n.Attempts + 1
			msg := out.err.Error()
			kind := string(send.Classify(out.err))
			o = storage.NotificationOutcome{Status: storage.NotificationFailed, Attempts: attempts, LastError: &msg, LastErrorKind: &kind}
			// The destination may have been switched off or deleted while we were sending: then
			// the row ends canceled rather than waiting for a retry that would be canceled anyway.
			reason, err := s.recheck(ctx, q, n.Channel, n.SecretName)
			if err != nil {
				return err
			}
			fields := map[string]any{"channel": n.Channel, "secret_name": n.SecretName, "attempts": attempts,
				"error": msg, "error_kind": kind, "notification_id": n.ID}
			retriable := reason == "" && attempts < MaxAttempts
			switch {
			case reason != "":
				o.Status, o.LastError, o.LastErrorKind = storage.NotificationCanceled, &reason, nil
				fields["canceled"] = reason
			case retriable:
				ra, _ := send.RetryAfter(out.err)
				next := now.Add(RetryDelay(attempts, ra))
				o.Status, o.NextAttemptAt = storage.NotificationQueued, next.Unix()
				fields["next_attempt_at"] = next.Unix()
				if ra > 0 {
					fields["retry_after_seconds"] = int64(ra / time.Second)
				}
			}
			fields["error_envelope"] = map[string]any{"schema_version": 1, "code": EventNotifyFailed, "kind": kind,
				"retriable": retriable, "message": msg, "transport": map[string]string{"protocol": s.protocol(n.Channel)}}
			level := "warn"
			if !retriable {
				level = "error"
			}
			events = append(events, runEvent(n.RunID, now, level, EventNotifyFailed, fields))
		}
		ok, err := q.CompleteNotification(ctx, n.ID, lease, o, now.Unix())
		if err != nil || !ok {
			return err // !ok: the claim was lost (lease expired, run deleted); report nothing
		}
		applied = true
		if len(events) > 0 {
			return s.events.AppendRunEvents(ctx, q, events)
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case !applied:
		log.Warn().Msg("notification claim lost before its outcome was recorded")
		return nil
	case out.sent:
		log.Info().Int("attempts", n.Attempts+1).Msg("notification sent")
	case out.cancel != "":
		log.Info().Str("reason", out.cancel).Msg("notification canceled")
	default:
		log.Warn().Err(out.err).Str("error_kind", string(send.Classify(out.err))).Int("attempts", n.Attempts+1).
			Msg("notification attempt failed")
	}
	if s.publish != nil && len(events) > 0 {
		s.publish(events...)
	}
	return nil
}

// release puts a row back to 'queued' after a shutdown interrupted its attempt; the attempt is
// not counted. If this fails too, the next start recovers the row.
func (s *Service) release(n storage.Notification, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.db.Writer().ReleaseNotification(ctx, n.ID, *n.LeaseUntil, s.clock.Now().Unix()); err != nil {
		log.Warn().Err(err).Msg("release notification at shutdown")
	}
}

func (s *Service) protocol(channel string) string {
	if d, ok := s.channels.Get(channel); ok {
		return d.Protocol()
	}
	return "unknown"
}

func runEvent(runID string, now time.Time, level, kind string, fields map[string]any) storage.RunEvent {
	b, _ := json.Marshal(fields) // strings, ints and bools always marshal
	f := string(b)
	return storage.RunEvent{RunID: runID, TS: now.Unix(), Level: level, Kind: kind, Message: kind, FieldsJSON: &f}
}

package notify

import (
	"time"

	"github.com/bastion-backup/bastion/storage"
)

// Webhook events (the "event" field and the X-Bastion-Event header).
const (
	WebhookEventRunFinished = "run_finished"
	// WebhookEventVerifyFailed reports a failed restore drill; operation_id names it.
	WebhookEventVerifyFailed = "verify_failed"
	WebhookEventTest         = "test"
)

// WebhookBody is the JSON document POSTed to generic webhooks (docs/notifications.md). Fields that
// are unknown are null rather than "-".
type WebhookBody struct {
	Event string `json:"event"`
	// DeliveryID is the notification id, also sent as X-Bastion-Delivery: the same on every
	// attempt of one notification.
	DeliveryID string `json:"delivery_id"`
	SentAt     string `json:"sent_at"`
	Title      string `json:"title"`

	Status                  *string `json:"status"`
	StatusText              *string `json:"status_text"`
	JobID                   *string `json:"job_id"`
	JobName                 *string `json:"job_name"`
	RunID                   *string `json:"run_id"`
	RunURL                  *string `json:"run_url"`
	StartedAt               *string `json:"started_at"`
	EndedAt                 *string `json:"ended_at"`
	TargetType              *string `json:"target_type"`
	TargetLocation          *string `json:"target_location"`
	Error                   *string `json:"error"`
	ConsistencyChangedTotal int64   `json:"consistency_changed_total"`
	// OperationID and OperationURL name the drill of a verify_failed event (absent otherwise).
	OperationID  *string `json:"operation_id,omitempty"`
	OperationURL *string `json:"operation_url,omitempty"`

	// Subject and Text are the email templates rendered for this run, for receivers that relay
	// a human-readable message.
	Subject string `json:"subject"`
	Text    string `json:"text"`
}

func strOrNil(s string) *string {
	if s == "" || s == "-" {
		return nil
	}
	return &s
}

func webhookBody(id string, run storage.NotificationRun, v Values, t Templates, now time.Time) WebhookBody {
	return WebhookBody{
		Event: WebhookEventRunFinished, DeliveryID: id, SentAt: now.UTC().Format(time.RFC3339), Title: v.Title,
		Status: strOrNil(v.Status), StatusText: strOrNil(v.StatusText),
		JobID: strOrNil(v.JobID), JobName: strOrNil(v.JobName), RunID: strOrNil(run.ID), RunURL: strOrNil(v.RunURL),
		StartedAt: strOrNil(v.StartedAt), EndedAt: strOrNil(v.EndedAt),
		TargetType: strOrNil(v.TargetType), TargetLocation: strOrNil(v.TargetLocation), Error: strOrNil(v.Error),
		ConsistencyChangedTotal: v.ConsistencyChangedTotal,
		Subject:                 Render(t.EmailSubject, v), Text: Render(t.EmailBody, v),
	}
}

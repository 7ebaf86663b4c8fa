// Package webhook is the generic webhook channel: a JSON document POSTed to any http(s) URL,
// signed with HMAC-SHA256 when the destination has a secret (docs/notifications.md).
package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/bastion-backup/bastion/engine/notify/channel"
	"github.com/bastion-backup/bastion/engine/notify/channel/email"
	"github.com/bastion-backup/bastion/engine/notify/send"
	"github.com/bastion-backup/bastion/engine/secrets"
)

// Name is the channel's name.
const Name = "webhook"

// Destination is the payload of a "webhook" secret: {"url", "secret"?}.
type Destination = secrets.Webhook

// Body is the JSON document POSTed to generic webhooks (docs/notifications.md). Fields that are
// unknown are null rather than "-".
type Body struct {
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

	// Subject and Text are the email templates rendered for this message, for receivers that
	// relay a human-readable message. The webhook has no templates of its own.
	Subject string `json:"subject"`
	Text    string `json:"text"`
}

func strOrNil(s string) *string {
	if s == "" || s == "-" {
		return nil
	}
	return &s
}

// NewBody builds the document of m.
func NewBody(m channel.Message) Body {
	v := m.Values
	b := Body{
		Event: m.Event, DeliveryID: m.DeliveryID, SentAt: m.Date.UTC().Format(time.RFC3339), Title: v.Title,
		Status: strOrNil(v.Status), StatusText: strOrNil(v.StatusText),
		JobID: strOrNil(v.JobID), JobName: strOrNil(v.JobName), RunID: strOrNil(v.RunID), RunURL: strOrNil(v.RunURL),
		StartedAt: strOrNil(v.StartedAt), EndedAt: strOrNil(v.EndedAt),
		TargetType: strOrNil(v.TargetType), TargetLocation: strOrNil(v.TargetLocation), Error: strOrNil(v.Error),
		ConsistencyChangedTotal: v.ConsistencyChangedTotal,
		Subject:                 m.Text[email.TemplateSubject], Text: m.Text[email.TemplateBody],
	}
	if m.Event == channel.EventVerifyFailed {
		b.OperationID, b.OperationURL = strOrNil(v.OperationID), strOrNil(v.OperationURL)
	}
	return b
}

// Driver sends with HTTP (its zero value: no redirects, default timeouts).
type Driver struct {
	HTTP send.HTTP
}

func (Driver) Name() string                  { return Name }
func (Driver) SecretKind() string            { return secrets.KindWebhook }
func (Driver) Protocol() string              { return "http" }
func (Driver) Templates() []channel.Template { return nil }

func (Driver) DecodeDestination(raw []byte) (any, error) {
	return channel.DecodeDestination[Destination](raw)
}

func (d Driver) Send(ctx context.Context, m channel.Message) error {
	p, ok := m.Destination.(Destination)
	if !ok {
		return fmt.Errorf("webhook: unexpected destination %T", m.Destination)
	}
	body, err := json.Marshal(NewBody(m))
	if err != nil {
		return fmt.Errorf("encode webhook body: %w", err)
	}
	return d.HTTP.Webhook(ctx, p, m.Event, body, m.DeliveryID)
}

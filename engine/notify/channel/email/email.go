// Package email is the email channel: a plain-text message sent over SMTP.
package email

import (
	"context"
	"fmt"

	"github.com/bastion-backup/bastion/engine/notify/channel"
	"github.com/bastion-backup/bastion/engine/notify/send"
	"github.com/bastion-backup/bastion/engine/secrets"
)

// Name is the channel's name.
const Name = "email"

// Destination is the payload of an "smtp" secret (docs/notifications.md).
type Destination = secrets.SMTP

// Template keys.
const (
	TemplateSubject = "email_subject"
	TemplateBody    = "email_body"
)

// Default templates.
const (
	DefaultSubject = "Bastion {{status_text}} - {{job_name}}"
	DefaultBody    = "Bastion backup\n\n" +
		"Job: {{job_name}}\n" +
		"Run: {{run_id}}\n" +
		"Status: {{status}}\n" +
		"Started: {{started_at}}\n" +
		"Ended: {{ended_at}}\n" +
		"{{target_line_email}}{{consistency_line_email}}{{error_line_email}}"
	DefaultVerifyFailedSubject = "Bastion restore drill failed - {{job_name}}"
	DefaultVerifyFailedBody    = "Bastion restore drill\n\n" +
		"The scheduled verification of a snapshot failed: the snapshot may not restore.\n\n" +
		"Job: {{job_name}}\n" +
		"Snapshot (run): {{run_id}}\n" +
		"Drill (operation): {{operation_id}} {{operation_url}}\n" +
		"Started: {{started_at}}\n" +
		"Ended: {{ended_at}}\n" +
		"{{target_line_email}}{{error_line_email}}"
)

// Driver sends with SMTP (its zero value: default timeouts).
type Driver struct {
	SMTP send.SMTP
}

func (Driver) Name() string       { return Name }
func (Driver) SecretKind() string { return secrets.KindSMTP }
func (Driver) Protocol() string   { return "smtp" }

func (Driver) Templates() []channel.Template {
	return []channel.Template{
		{Key: TemplateSubject, Label: "Email subject template", DrillLabel: "Drill failure email subject template",
			Run: DefaultSubject, VerifyFailed: DefaultVerifyFailedSubject, Test: "Bastion test notification", Lines: 1},
		{Key: TemplateBody, Label: "Email body template", DrillLabel: "Drill failure email body template",
			Run: DefaultBody, VerifyFailed: DefaultVerifyFailedBody,
			Test: "Bastion test notification\n\nDestination: {{destination}}\nTime: {{time}}\n", Lines: 5},
	}
}

func (Driver) DecodeDestination(raw []byte) (any, error) {
	return channel.DecodeDestination[Destination](raw)
}

func (d Driver) Send(ctx context.Context, m channel.Message) error {
	p, ok := m.Destination.(Destination)
	if !ok {
		return fmt.Errorf("email: unexpected destination %T", m.Destination)
	}
	return d.SMTP.Send(ctx, p, send.Email{Subject: m.Text[TemplateSubject], Body: m.Text[TemplateBody],
		ID: m.DeliveryID, Date: m.Date})
}

// Package wecombot is the WeCom group-bot channel: a markdown message POSTed to the bot's
// webhook URL.
package wecombot

import (
	"context"
	"fmt"

	"github.com/bastion-backup/bastion/engine/notify/channel"
	"github.com/bastion-backup/bastion/engine/notify/send"
	"github.com/bastion-backup/bastion/engine/secrets"
)

// Name is the channel's name.
const Name = "wecom_bot"

// Destination is the payload of a "wecom_bot" secret: {"webhook_url": "https://qyapi…?key=…"}.
type Destination = secrets.WeComBot

// TemplateMarkdown is the key of the channel's one template.
const TemplateMarkdown = "wecom_markdown"

// Default templates, as in the original (with its consistency line).
const (
	DefaultMarkdown = "**{{title}}**\n" +
		"> Job: {{job_name}}\n" +
		"> Run: {{run_id}}\n" +
		"> Started: {{started_at}}\n" +
		"> Ended: {{ended_at}}\n" +
		"{{target_line_wecom}}{{consistency_line_wecom}}{{error_line_wecom}}"
	DefaultVerifyFailedMarkdown = "**{{title}}**\n" +
		"> Job: {{job_name}}\n" +
		"> Snapshot: {{run_id}}\n" +
		"> Drill: {{operation_id}}\n" +
		"> Ended: {{ended_at}}\n" +
		"{{target_line_wecom}}{{error_line_wecom}}"
)

// Driver sends with HTTP (its zero value: no redirects, default timeouts).
type Driver struct {
	HTTP send.HTTP
}

func (Driver) Name() string       { return Name }
func (Driver) SecretKind() string { return secrets.KindWeComBot }
func (Driver) Protocol() string   { return "http" }

func (Driver) Templates() []channel.Template {
	return []channel.Template{{
		Key: TemplateMarkdown, Label: "WeCom template", DrillLabel: "Drill failure WeCom template",
		Run: DefaultMarkdown, VerifyFailed: DefaultVerifyFailedMarkdown,
		Test:  "**Bastion test notification**\n> Destination: {{destination}}\n> Time: {{time}}\n",
		Lines: 5,
	}}
}

func (Driver) DecodeDestination(raw []byte) (any, error) {
	return channel.DecodeDestination[Destination](raw)
}

func (d Driver) Send(ctx context.Context, m channel.Message) error {
	p, ok := m.Destination.(Destination)
	if !ok {
		return fmt.Errorf("wecom_bot: unexpected destination %T", m.Destination)
	}
	return d.HTTP.WeCom(ctx, p, m.Text[TemplateMarkdown], m.DeliveryID)
}

package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/bastion-backup/bastion/storage"
)

// Channels.
const (
	ChannelWeComBot = "wecom_bot"
	ChannelEmail    = "email"
	ChannelWebhook  = "webhook"
)

// AllChannels lists the channels in display order.
var AllChannels = []string{ChannelWeComBot, ChannelEmail, ChannelWebhook}

// ValidChannel reports whether c is a channel.
func ValidChannel(c string) bool {
	return c == ChannelWeComBot || c == ChannelEmail || c == ChannelWebhook
}

// Settings is the document stored under settings key "notifications".
type Settings struct {
	Enabled   bool      `json:"enabled"`
	Channels  Channels  `json:"channels"`
	Templates Templates `json:"templates"`
}

// Channels holds the per-channel switches.
type Channels struct {
	WeComBot ChannelSettings `json:"wecom_bot"`
	Email    ChannelSettings `json:"email"`
	Webhook  ChannelSettings `json:"webhook"`
}

// ChannelSettings is one channel's switch.
type ChannelSettings struct {
	Enabled bool `json:"enabled"`
}

// Templates are the global message templates (see template.go for placeholders).
type Templates struct {
	WeComMarkdown string `json:"wecom_markdown"`
	EmailSubject  string `json:"email_subject"`
	EmailBody     string `json:"email_body"`
	// VerifyFailed are the templates of a failed restore drill (event kind verify_failed).
	VerifyFailed EventTemplates `json:"verify_failed"`
}

// EventTemplates are the templates of one event kind other than a finished run.
type EventTemplates struct {
	WeComMarkdown string `json:"wecom_markdown"`
	EmailSubject  string `json:"email_subject"`
	EmailBody     string `json:"email_body"`
}

// forEvent returns the run templates with those of event kind in their place.
func (t Templates) forEvent(kind string) Templates {
	if kind == storage.NotificationEventVerifyFailed {
		v := t.VerifyFailed
		t.WeComMarkdown, t.EmailSubject, t.EmailBody = v.WeComMarkdown, v.EmailSubject, v.EmailBody
	}
	return t
}

// ChannelEnabled reports whether channel is switched on (the global switch aside).
func (s Settings) ChannelEnabled(channel string) bool {
	switch channel {
	case ChannelWeComBot:
		return s.Channels.WeComBot.Enabled
	case ChannelEmail:
		return s.Channels.Email.Enabled
	case ChannelWebhook:
		return s.Channels.Webhook.Enabled
	}
	return false
}

// Default templates, as in the original (with its consistency line).
const (
	DefaultWeComMarkdown = "**{{title}}**\n" +
		"> Job: {{job_name}}\n" +
		"> Run: {{run_id}}\n" +
		"> Started: {{started_at}}\n" +
		"> Ended: {{ended_at}}\n" +
		"{{target_line_wecom}}{{consistency_line_wecom}}{{error_line_wecom}}"
	DefaultEmailSubject = "Bastion {{status_text}} - {{job_name}}"
	DefaultEmailBody    = "Bastion backup\n\n" +
		"Job: {{job_name}}\n" +
		"Run: {{run_id}}\n" +
		"Status: {{status}}\n" +
		"Started: {{started_at}}\n" +
		"Ended: {{ended_at}}\n" +
		"{{target_line_email}}{{consistency_line_email}}{{error_line_email}}"
)

// Default templates of a failed restore drill.
const (
	DefaultVerifyFailedWeComMarkdown = "**{{title}}**\n" +
		"> Job: {{job_name}}\n" +
		"> Snapshot: {{run_id}}\n" +
		"> Drill: {{operation_id}}\n" +
		"> Ended: {{ended_at}}\n" +
		"{{target_line_wecom}}{{error_line_wecom}}"
	DefaultVerifyFailedEmailSubject = "Bastion restore drill failed - {{job_name}}"
	DefaultVerifyFailedEmailBody    = "Bastion restore drill\n\n" +
		"The scheduled verification of a snapshot failed: the snapshot may not restore.\n\n" +
		"Job: {{job_name}}\n" +
		"Snapshot (run): {{run_id}}\n" +
		"Drill (operation): {{operation_id}} {{operation_url}}\n" +
		"Started: {{started_at}}\n" +
		"Ended: {{ended_at}}\n" +
		"{{target_line_email}}{{error_line_email}}"
)

// DefaultSettings is what a Hub starts with: everything on, default templates.
func DefaultSettings() Settings {
	return Settings{
		Enabled: true,
		Channels: Channels{
			WeComBot: ChannelSettings{Enabled: true},
			Email:    ChannelSettings{Enabled: true},
			Webhook:  ChannelSettings{Enabled: true},
		},
		Templates: Templates{
			WeComMarkdown: DefaultWeComMarkdown,
			EmailSubject:  DefaultEmailSubject,
			EmailBody:     DefaultEmailBody,
			VerifyFailed: EventTemplates{
				WeComMarkdown: DefaultVerifyFailedWeComMarkdown,
				EmailSubject:  DefaultVerifyFailedEmailSubject,
				EmailBody:     DefaultVerifyFailedEmailBody,
			},
		},
	}
}

// DecodeSettings parses a settings document over base: fields the document leaves out keep
// base's values (a document written before the webhook channel existed keeps it on).
func DecodeSettings(base Settings, raw []byte) (Settings, error) {
	s := base
	if err := json.Unmarshal(raw, &s); err != nil {
		return Settings{}, fmt.Errorf("decode notification settings: %w", err)
	}
	return s, nil
}

// ValidateSettings rejects blank templates. Unknown placeholders are not an error: see
// UnknownPlaceholders.
func ValidateSettings(s Settings) error {
	for _, t := range []struct{ field, value, what string }{
		{"templates.wecom_markdown", s.Templates.WeComMarkdown, "WeCom template"},
		{"templates.email_subject", s.Templates.EmailSubject, "Email subject template"},
		{"templates.email_body", s.Templates.EmailBody, "Email body template"},
		{"templates.verify_failed.wecom_markdown", s.Templates.VerifyFailed.WeComMarkdown, "Drill failure WeCom template"},
		{"templates.verify_failed.email_subject", s.Templates.VerifyFailed.EmailSubject, "Drill failure email subject template"},
		{"templates.verify_failed.email_body", s.Templates.VerifyFailed.EmailBody, "Drill failure email body template"},
	} {
		if strings.TrimSpace(t.value) == "" {
			return &Error{Kind: KindInvalid, Code: "invalid_template", Field: t.field, Reason: "required",
				Message: t.what + " is required"}
		}
	}
	return nil
}

// errSettingsUnreadable marks a stored settings document that does not decode: unlike a
// database error, trying again cannot help.
var errSettingsUnreadable = errors.New("stored notification settings are unreadable")

// loadSettings reads the settings document through q, or the defaults when none is stored.
func loadSettings(ctx context.Context, q storage.Q) (Settings, error) {
	raw, err := q.GetSetting(ctx, storage.SettingNotifications)
	if errors.Is(err, storage.ErrNotFound) {
		return DefaultSettings(), nil
	}
	if err != nil {
		return Settings{}, err
	}
	set, err := DecodeSettings(DefaultSettings(), []byte(raw))
	if err != nil {
		return Settings{}, fmt.Errorf("%w: %w", errSettingsUnreadable, err)
	}
	return set, nil
}

func encodeSettings(s Settings) string {
	b, _ := json.Marshal(s) // plain structs of strings and bools always marshal
	return string(b)
}

// Package secrets holds credentials encrypted at rest: the payload shape of each secret kind and
// its validation (this file), and the keyring and store that encrypt them.
package secrets

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bastion-backup/bastion/engine/internal/strictjson"
)

// Secret kinds. The HTTP API spells wecom_bot as "wecom-bot" in paths.
const (
	KindWebDAV            = "webdav"
	KindSMTP              = "smtp"
	KindWeComBot          = "wecom_bot"
	KindWebhook           = "webhook"
	KindBackupAgeIdentity = "backup_age_identity"
)

// HubNode is the node id of secrets that belong to the Hub itself.
const HubNode = "hub"

// WebDAV is the payload of a "webdav" secret.
type WebDAV struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// SMTP is the payload of an "smtp" secret.
type SMTP struct {
	Host     string   `json:"host"`
	Port     int      `json:"port"`
	Username string   `json:"username"`
	Password string   `json:"password"`
	From     string   `json:"from"`
	To       []string `json:"to"`
	TLS      string   `json:"tls"` // none | starttls | implicit
	// CACert optionally holds PEM certificates to trust for this server besides the system roots
	// (a self-signed or private-CA server). Only meaningful with tls starttls or implicit.
	CACert string `json:"ca_cert,omitempty"`
}

// WeComBot is the payload of a "wecom_bot" secret.
type WeComBot struct {
	WebhookURL string `json:"webhook_url"`
}

// Webhook is the payload of a "webhook" secret: a generic JSON POST, signed with HMAC-SHA256
// over the body when Secret is set.
type Webhook struct {
	URL    string `json:"url"`
	Secret string `json:"secret,omitempty"`
}

// ValidationError says which field of a payload or name is wrong. Code is the API error code.
type ValidationError struct {
	Code    string // invalid_payload, invalid_name, invalid_webhook_url, invalid_from, ...
	Field   string
	Reason  string // required, invalid_format, out_of_range, ...
	Message string
}

func (e *ValidationError) Error() string { return e.Message }

func invalid(code, field, reason, format string, args ...any) *ValidationError {
	return &ValidationError{Code: code, Field: field, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// MaxNameLen bounds secret names.
const MaxNameLen = 128

// ValidateName checks a secret name: non-empty after trimming, at most MaxNameLen bytes, valid
// UTF-8, no path separators, no control characters, no leading or trailing spaces.
func ValidateName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return invalid("invalid_name", "name", "required", "secret name is required")
	case name != strings.TrimSpace(name):
		return invalid("invalid_name", "name", "invalid_format", "secret name must not start or end with spaces")
	case len(name) > MaxNameLen:
		return invalid("invalid_name", "name", "too_long", "secret name is longer than %d bytes", MaxNameLen)
	case !utf8.ValidString(name):
		return invalid("invalid_name", "name", "invalid_format", "secret name is not valid UTF-8")
	case strings.ContainsAny(name, `/\`):
		return invalid("invalid_name", "name", "invalid_format", "secret name must not contain / or \\")
	case name == "." || name == "..":
		return invalid("invalid_name", "name", "invalid_format", "secret name must not be . or ..")
	}
	for _, r := range name {
		// Cf: invisible formatting characters (right-to-left overrides, zero-width joiners) that
		// make two names look alike or a name look like something else in a list.
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return invalid("invalid_name", "name", "invalid_format", "secret name must not contain control or invisible formatting characters")
		}
	}
	return nil
}

// DecodePayload parses raw as the payload of kind, rejecting unknown fields and trailing data,
// and validates it. It returns the typed payload (WebDAV, SMTP, WeComBot or Webhook).
func DecodePayload(kind string, raw []byte) (any, error) {
	switch kind {
	case KindWebDAV:
		var p WebDAV
		if err := DecodeStrict(raw, &p); err != nil {
			return nil, err
		}
		return p, p.Validate()
	case KindSMTP:
		var p SMTP
		if err := DecodeStrict(raw, &p); err != nil {
			return nil, err
		}
		return p, p.Validate()
	case KindWeComBot:
		var p WeComBot
		if err := DecodeStrict(raw, &p); err != nil {
			return nil, err
		}
		return p, p.Validate()
	case KindWebhook:
		var p Webhook
		if err := DecodeStrict(raw, &p); err != nil {
			return nil, err
		}
		return p, p.Validate()
	}
	return nil, invalid("invalid_kind", "kind", "unsupported", "unknown secret kind %q", kind)
}

// DecodeStrict parses raw into v, rejecting unknown fields and trailing data, with errors
// (*ValidationError) that never echo the input. Notification channel drivers decode their
// destination payloads with it.
func DecodeStrict(raw []byte, v any) error {
	err := strictjson.Decode(raw, v)
	switch {
	case errors.Is(err, strictjson.ErrTrailingData):
		return invalid("invalid_payload", "", "invalid_format", "payload has data after the JSON object")
	case err != nil:
		return invalid("invalid_payload", "", "invalid_format", "payload is not valid JSON for this kind: %s", jsonProblem(err))
	}
	return nil
}

// jsonProblem describes a decode error without echoing the input, which may hold a password.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return "malformed JSON"
}

// Validate checks a WebDAV credential.
func (p WebDAV) Validate() error {
	if strings.TrimSpace(p.Username) == "" {
		return invalid("invalid_username", "username", "required", "username is required")
	}
	if p.Password == "" {
		return invalid("invalid_password", "password", "required", "password is required")
	}
	if strings.ContainsAny(p.Username, ":\r\n") {
		return invalid("invalid_username", "username", "invalid_format", "username must not contain ':' or line breaks")
	}
	return nil
}

// Validate checks an SMTP destination.
func (p SMTP) Validate() error {
	if strings.TrimSpace(p.Host) == "" || strings.ContainsAny(p.Host, " /\r\n") {
		return invalid("invalid_host", "host", "invalid_format", "host must be a host name or address")
	}
	if p.Port <= 0 || p.Port > 65535 {
		return invalid("invalid_port", "port", "out_of_range", "port must be between 1 and 65535")
	}
	switch p.TLS {
	case "none", "starttls", "implicit":
	default:
		return invalid("invalid_tls", "tls", "invalid_value", "tls must be none, starttls or implicit")
	}
	if p.CACert != "" {
		if p.TLS == "none" {
			return invalid("invalid_ca_cert", "ca_cert", "invalid_value", "ca_cert needs tls starttls or implicit")
		}
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(p.CACert)) {
			return invalid("invalid_ca_cert", "ca_cert", "invalid_format", "ca_cert must hold PEM-encoded certificates")
		}
	}
	if p.Username != "" && p.Password == "" {
		return invalid("invalid_password", "password", "required", "password is required when a username is set")
	}
	if _, err := mail.ParseAddress(p.From); err != nil {
		return invalid("invalid_from", "from", "invalid_format", "from is not a valid email address")
	}
	if len(p.To) == 0 {
		return invalid("invalid_to", "to", "required", "at least one recipient is required")
	}
	for i, to := range p.To {
		if _, err := mail.ParseAddress(to); err != nil {
			return invalid("invalid_to", fmt.Sprintf("to[%d]", i), "invalid_format", "recipient %d is not a valid email address", i+1)
		}
	}
	return nil
}

// Validate checks a WeCom group-bot webhook.
func (p WeComBot) Validate() error {
	return validateHookURL(p.WebhookURL, "webhook_url")
}

// Validate checks a generic webhook.
func (p Webhook) Validate() error {
	return validateHookURL(p.URL, "url")
}

// validateHookURL accepts absolute http(s) URLs with a host and no userinfo: credentials in a URL
// end up in proxies' and servers' logs, so they belong in the signing secret instead.
func validateHookURL(raw, field string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return invalid("invalid_webhook_url", field, "invalid_format", "%s must be an absolute http or https URL", field)
	}
	if u.User != nil {
		return invalid("invalid_webhook_url", field, "credentials_in_url", "%s must not carry a user name or password", field)
	}
	return nil
}

package webdav

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
)

// Type is the type of a WebDAV target.
const Type = "webdav"

// Driver is the WebDAV driver; it reads "webdav" secrets ({username, password}).
var Driver targets.Driver = driver{}

type driver struct{}

func (driver) Type() string       { return Type }
func (driver) SecretKind() string { return secrets.KindWebDAV }

func (driver) Parse(raw json.RawMessage) (targets.Config, error) {
	var c Config
	if err := targets.DecodeConfig(Type, raw, &c); err != nil {
		return nil, err
	}
	if c.TargetType != Type {
		return nil, targets.Fieldf("type", "invalid_value", "must be %s", Type)
	}
	return &c, nil
}

// Config is a WebDAV target object:
// {"type":"webdav","base_url":"https://dav.example.com/backups/","secret_name":"nas"}.
type Config struct {
	TargetType string `json:"type"`
	BaseURL    string `json:"base_url,omitempty"`
	Secret     string `json:"secret_name,omitempty"`
}

// Redact builds the stored description of a WebDAV target.
func Redact(baseURL, secretName string) targets.Redacted {
	return targets.NewRedacted(Config{TargetType: Type, BaseURL: baseURL, Secret: secretName})
}

func (c *Config) Validate() error {
	if strings.TrimSpace(c.BaseURL) == "" {
		return targets.Fieldf("base_url", "required", "is required")
	}
	u, err := url.Parse(strings.TrimSpace(c.BaseURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return targets.Fieldf("base_url", "invalid_format", "must be an absolute http or https URL")
	}
	if u.User != nil {
		return targets.Fieldf("base_url", "credentials_in_url", "must not carry a user name or password; use the WebDAV secret")
	}
	if strings.TrimSpace(c.Secret) == "" {
		return targets.Fieldf("secret_name", "required", "is required")
	}
	return nil
}

func (c *Config) Type() string             { return Type }
func (c *Config) SecretName() string       { return c.Secret }
func (c *Config) Endpoint() string         { return c.BaseURL }
func (c *Config) Redact() targets.Redacted { return Redact(c.BaseURL, c.Secret) }

// Open decodes the WebDAV secret payload and builds the target, retried under RetryPolicy. No
// request is sent.
func (c *Config) Open(_ context.Context, creds []byte, deps targets.Deps) (targets.Target, error) {
	var cred secrets.WebDAV
	if err := json.Unmarshal(creds, &cred); err != nil {
		// json errors may quote the input, which is a credential: keep only the fact.
		return nil, &targets.Error{Kind: targets.KindConfig, Code: "webdav_secret_invalid",
			Op: "read webdav credential " + c.Secret, Err: errors.New("the stored credential is not a valid WebDAV payload")}
	}
	t, err := New(c.BaseURL, cred, Options{SecretName: c.Secret, Logger: deps.Logger})
	if err != nil {
		return nil, err // a *targets.Error of kind config; it never carries the credential
	}
	return t.WithRetries(), nil
}

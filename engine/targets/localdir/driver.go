package localdir

import (
	"context"
	"encoding/json"
	"path"
	"path/filepath"
	"strings"

	"github.com/bastion-backup/bastion/engine/targets"
)

// Type is the type of a local directory target.
const Type = "local_dir"

// Driver is the local directory driver; it needs no secret.
var Driver targets.Driver = driver{}

type driver struct{}

func (driver) Type() string       { return Type }
func (driver) SecretKind() string { return "" }

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

// Config is a local directory target object: {"type":"local_dir","base_dir":"/srv/backups"}.
type Config struct {
	TargetType string `json:"type"`
	BaseDir    string `json:"base_dir,omitempty"`
}

// Redact builds the stored description of a local directory target.
func Redact(baseDir string) targets.Redacted {
	return targets.NewRedacted(Config{TargetType: Type, BaseDir: baseDir})
}

// Validate requires an absolute base_dir without ".." segments: a relative one would depend on
// the working directory of whoever runs the job.
func (c *Config) Validate() error {
	if strings.TrimSpace(c.BaseDir) == "" {
		return targets.Fieldf("base_dir", "required", "is required")
	}
	if !filepath.IsAbs(c.BaseDir) && !path.IsAbs(c.BaseDir) {
		return targets.Fieldf("base_dir", "invalid_format", "must be an absolute path")
	}
	for _, seg := range strings.FieldsFunc(c.BaseDir, func(r rune) bool { return r == '/' || r == '\\' }) {
		if seg == ".." {
			return targets.Fieldf("base_dir", "invalid_format", "must not contain '..'")
		}
	}
	return nil
}

func (c *Config) SecretName() string       { return "" }
func (c *Config) Endpoint() string         { return "" }
func (c *Config) LocalPath() string        { return c.BaseDir }
func (c *Config) Redact() targets.Redacted { return Redact(c.BaseDir) }
func (c *Config) Type() string             { return Type }

func (c *Config) Open(_ context.Context, _ []byte, deps targets.Deps) (targets.Target, error) {
	t, err := New(c.BaseDir, WithLogger(deps.Logger))
	if err != nil {
		return nil, &targets.Error{Kind: targets.KindConfig, Code: "local_dir_config",
			Hint: "the target's base_dir must be an absolute path", Op: "open local_dir target", Err: err}
	}
	return t, nil
}

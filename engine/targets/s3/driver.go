package s3

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/bastion-backup/bastion/engine/targets"
)

// Driver is the S3 driver; it reads "s3" secrets ({access_key_id, secret_access_key}).
var Driver targets.Driver = driver{}

type driver struct{}

func (driver) Type() string       { return Type }
func (driver) SecretKind() string { return SecretKind }

// Parse decodes the target object. A job spec's part_size_bytes is the archive's split size
// (jobspec keeps it), so it never reaches here: uploads use DefaultPartSizeBytes parts.
func (driver) Parse(raw json.RawMessage) (targets.Config, error) {
	var cj configJSON
	if err := targets.DecodeConfig(Type, raw, &cj); err != nil {
		return nil, err
	}
	if cj.Type != Type {
		return nil, targets.Fieldf("type", "invalid_value", "must be %s", Type)
	}
	return &driverConfig{c: cj.Config.Normalized()}, nil
}

// CheckSecret validates an "s3" secret saved through the API and re-encodes it.
func (driver) CheckSecret(payload json.RawMessage) (json.RawMessage, error) {
	c, err := ParseCredentials(payload)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "s3 credentials: ")
		field := ""
		for _, f := range []string{"access_key_id", "secret_access_key"} {
			if strings.HasPrefix(msg, f+" ") {
				field, msg = f, strings.TrimPrefix(msg, f+" ")
			}
		}
		return nil, targets.Fieldf(field, "invalid_value", "%s", msg)
	}
	return json.Marshal(c)
}

// driverConfig is a decoded S3 target object.
type driverConfig struct{ c Config }

func (d *driverConfig) Type() string       { return Type }
func (d *driverConfig) SecretName() string { return d.c.SecretName }
func (d *driverConfig) Endpoint() string   { return d.c.Endpoint }
func (d *driverConfig) Redact() targets.Redacted {
	return redact(d.c)
}

// Validate turns Config.Validate's "field: message" errors into field errors.
func (d *driverConfig) Validate() error {
	err := d.c.Validate()
	if err == nil {
		return nil
	}
	field, msg, ok := strings.Cut(err.Error(), ": ")
	if !ok || strings.Contains(field, " ") {
		return targets.Fieldf("", "invalid_value", "%s", err.Error())
	}
	reason := "invalid_value"
	if strings.HasPrefix(msg, "required") {
		reason = "required"
	}
	return targets.Fieldf(field, reason, "%s", msg)
}

// Open decodes the credential and builds the target. No request is sent. Retries are the
// target's own (each PUT, part, GET and HEAD), not a retrying wrapper: a multipart upload
// retries just the part that failed.
func (d *driverConfig) Open(ctx context.Context, creds []byte, deps targets.Deps) (targets.Target, error) {
	cred, err := ParseCredentials(creds)
	if err != nil {
		return nil, &targets.Error{Kind: targets.KindConfig, Code: Code(targets.KindConfig),
			Op: "read s3 credential " + d.c.SecretName, Err: err}
	}
	t, err := Open(ctx, d.c, cred, Options{Logger: deps.Logger})
	if err != nil {
		return nil, err // not a nil *Target inside the interface
	}
	return t, nil
}

// redact is the stored description of a target: its object without part_size_bytes, which a
// job spec writes beside it as the split size.
func redact(c Config) targets.Redacted {
	c = c.Normalized()
	c.PartSizeBytes = 0
	return targets.NewRedacted(c)
}

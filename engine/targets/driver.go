package targets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/internal/strictjson"
)

// Driver is one kind of target: it names its type, the kind of secret it reads credentials from,
// and decodes its own part of a job's target object. Each driver lives in its own package under
// engine/targets; engine/targets/all lists them, and that list is the only place that knows them
// all (job specs, the opener, maintenance, agents and the HTTP API ask it).
type Driver interface {
	// Type is the "type" of the target object ("local_dir", "webdav").
	Type() string
	// SecretKind is the kind of secret (engine/secrets) holding the credential the target's
	// secret_name refers to, or "" for a target that needs none.
	SecretKind() string
	// Parse decodes the target object (as in a job spec or a stored run target: "type", the
	// driver's own fields and "secret_name" when SecretKind is set; never "part_size_bytes").
	// Unknown fields are refused. Errors are *FieldError. Parse does not validate values: a
	// stored description is opened as it was written, and Validate is for new job specs.
	Parse(raw json.RawMessage) (Config, error)
}

// Config is a decoded target description.
type Config interface {
	// Type is the driver's type.
	Type() string
	// Validate checks the values a job spec gave; errors are *FieldError.
	Validate() error
	// SecretName names the node's secret (of the driver's SecretKind) to open the target with;
	// "" when the driver needs none.
	SecretName() string
	// Endpoint is the URL the credential is sent to (credentials are bound to its origin), or ""
	// when nothing leaves the node.
	Endpoint() string
	// Redact is the description stored with a run: the target object without credentials.
	Redact() Redacted
	// Open returns a working target. creds is the payload of the secret SecretName names (nil
	// when the driver needs none); errors are *Error and never repeat it.
	Open(ctx context.Context, creds []byte, deps Deps) (Target, error)
}

// SecretChecker is implemented by a Driver whose SecretKind is its own: it validates a payload
// saved through the API and returns it re-encoded, so that no stray bytes are stored. A kind
// engine/secrets knows (webdav) is checked there instead.
type SecretChecker interface {
	CheckSecret(payload json.RawMessage) (json.RawMessage, error)
}

// LocalPath is implemented by the Config of a target that is a directory of the node's own file
// system: only that node can reach it, and it must stay outside the node's data directory.
type LocalPath interface {
	LocalPath() string
}

// LocalPathOf is the directory of a stored target that lives in its node's file system, or ok
// false (for any other target, or a description no driver knows).
func (r *Registry) LocalPathOf(red Redacted) (dir string, ok bool) {
	c, err := r.ParseRedacted(red)
	if err != nil {
		return "", false
	}
	lp, ok := c.(LocalPath)
	if !ok {
		return "", false
	}
	return lp.LocalPath(), true
}

// Deps are what a driver may use to open a target.
type Deps struct {
	Logger zerolog.Logger
}

// FieldError is a driver's refusal of one field of a target object. Field is the JSON key within
// the target object ("base_url"; "" for the object as a whole); Message follows the field's name
// in a sentence ("is required", "must be an absolute path"), so callers can prefix their path.
type FieldError struct {
	Field   string
	Reason  string // required, invalid_format, invalid_value, not_allowed, credentials_in_url
	Message string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return "target " + e.Message
	}
	return e.Field + " " + e.Message
}

// Fieldf returns a *FieldError.
func Fieldf(field, reason, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// DecodeConfig strictly decodes the target object of type typ into v: unknown fields are
// refused, and errors name the field without repeating the input (which may hold a mistyped
// password).
func DecodeConfig(typ string, raw json.RawMessage, v any) error {
	err := strictjson.Decode(raw, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return Fieldf(te.Field, "invalid_format", "must be %s", te.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return Fieldf(f, "not_allowed", "is not allowed: a %s target takes no %s", typ, f)
	}
	return Fieldf("", "invalid_format", "must be a JSON object")
}

// Registry finds drivers by type. It is built once from an explicit list (engine/targets/all).
type Registry struct {
	byType map[string]Driver
	types  []string
}

// NewRegistry indexes drivers; a duplicate type is a programming error and panics.
func NewRegistry(drivers ...Driver) *Registry {
	r := &Registry{byType: map[string]Driver{}}
	for _, d := range drivers {
		if _, dup := r.byType[d.Type()]; dup {
			panic("targets: driver " + d.Type() + " listed twice")
		}
		r.byType[d.Type()] = d
		r.types = append(r.types, d.Type())
	}
	sort.Strings(r.types)
	return r
}

// Lookup returns the driver of typ.
func (r *Registry) Lookup(typ string) (Driver, bool) {
	d, ok := r.byType[typ]
	return d, ok
}

// Types lists the known types, sorted.
func (r *Registry) Types() []string { return append([]string(nil), r.types...) }

// TypeList is the known types for a message: "a, b or c".
func (r *Registry) TypeList() string {
	t := r.types
	if len(t) < 2 {
		return strings.Join(t, "")
	}
	return strings.Join(t[:len(t)-1], ", ") + " or " + t[len(t)-1]
}

// SecretKinds lists the secret kinds the drivers read, sorted, without duplicates.
func (r *Registry) SecretKinds() []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range r.types {
		if k := r.byType[t].SecretKind(); k != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Parse decodes a target object with the driver its "type" names. Errors are *FieldError;
// an unknown type is Field "type", Reason "invalid_value".
func (r *Registry) Parse(raw json.RawMessage) (Config, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, Fieldf("", "invalid_format", "must be a JSON object")
	}
	if head.Type == "" {
		return nil, Fieldf("type", "required", "is required (%s)", r.TypeList())
	}
	d, ok := r.byType[head.Type]
	if !ok {
		return nil, Fieldf("type", "invalid_value", "must be %s", r.TypeList())
	}
	return d.Parse(raw)
}

// ParseRedacted decodes a stored run target description with its driver. Unlike a job spec, a
// stored description is read leniently, as earlier versions read it into one struct: fields its
// driver does not know (part_size_bytes, a field of another version) and empty ones are
// skipped; Redact writes back only the driver's. Errors are *Error of kind config.
func (r *Registry) ParseRedacted(red Redacted) (Config, error) {
	raw := red.JSON()
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) == nil && fields != nil {
		for k, v := range fields {
			if s := string(bytes.TrimSpace(v)); k == "part_size_bytes" || s == "null" || s == `""` {
				delete(fields, k)
			}
		}
		raw, _ = json.Marshal(fields)
	}
	for range 16 { // each round drops one unknown field
		c, err := r.Parse(raw)
		var fe *FieldError
		if err == nil {
			return c, nil
		}
		if !errors.As(err, &fe) || fe.Reason != "not_allowed" || fields == nil || fields[fe.Field] == nil || fe.Field == "type" {
			return nil, &Error{Kind: KindConfig, Code: "unsupported_target", Op: "read stored target",
				Err: fmt.Errorf("target %q: %w", red.Type, err)}
		}
		delete(fields, fe.Field)
		raw, _ = json.Marshal(fields)
	}
	return nil, &Error{Kind: KindConfig, Code: "unsupported_target", Op: "read stored target",
		Err: fmt.Errorf("target %q has too many unknown fields", red.Type)}
}

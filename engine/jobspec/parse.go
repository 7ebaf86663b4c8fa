package jobspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/bastion-backup/bastion/engine/internal/strictjson"
)

// Parse decodes a job spec (legacy v1 or canonical v2), applies defaults and returns its v1
// form. It does not validate: call Validate (or ParseAndValidate). Unknown fields are rejected,
// so a misspelt option never goes unnoticed. Errors are *Error.
func Parse(raw []byte) (*Spec, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return nil, errorf("spec", "invalid_format", "spec must be a JSON object")
	}
	if t, ok := top["type"]; ok {
		var s string
		if json.Unmarshal(t, &s) == nil {
			return parseV1(raw, top)
		}
	}
	return parseV2(raw, top)
}

// ParseAndValidate is Parse followed by Validate.
func ParseAndValidate(raw []byte) (*Spec, error) {
	s, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func defaultPipeline() Pipeline {
	return Pipeline{
		Format:     FormatArchiveV1,
		Encryption: Encryption{Type: EncryptionNone},
		WebDAV:     PipelineWebDAV{RawTreeDirect: RawTreeDirect{Mode: "off", ResumeBySize: true}},
	}
}

func defaultNotifications() Notifications {
	return Notifications{Mode: NotifyInherit, Destinations: map[string][]string{}}
}

func defaultRetention() Retention {
	return Retention{MaxDeletePerTick: 50, MaxDeletePerDay: 200}
}

func defaultFilesystem() *FilesystemSource {
	return &FilesystemSource{
		Paths: []string{}, PreScan: true, Include: []string{}, Exclude: []string{},
		SymlinkPolicy: SymlinkKeep, HardlinkPolicy: HardlinkCopy, ErrorPolicy: ErrorFailFast,
		SnapshotMode: SnapshotOff, ConsistencyPolicy: ConsistencyWarn,
	}
}

func defaultVaultwarden() *VaultwardenSource {
	return &VaultwardenSource{ConsistencyPolicy: ConsistencyWarn}
}

// UnmarshalJSON gives an explicit "limits" object its default concurrency of 4.
func (l *Limits) UnmarshalJSON(b []byte) error {
	type plain Limits
	p := plain{Concurrency: 4}
	if err := strictDecode(b, &p); err != nil {
		return err
	}
	*l = Limits(p)
	return nil
}

func parseV1(raw []byte, top map[string]json.RawMessage) (*Spec, error) {
	in := specJSON{
		Pipeline: defaultPipeline(), Notifications: defaultNotifications(),
		Retention: defaultRetention(),
	}
	if err := strictDecode(raw, &in); err != nil {
		return nil, formatError("spec", err)
	}
	if _, ok := top["v"]; !ok {
		return nil, errorf("spec.v", "required", "spec.v is required (1 for this shape)")
	}
	s := &Spec{
		V: in.V, Type: in.Type, Pipeline: in.Pipeline, Notifications: in.Notifications,
		Retention: in.Retention, Hooks: in.Hooks, HasRetention: present(top, "retention"),
	}
	t, terr := parseTargetV1(in.Target)
	if terr != nil {
		return nil, terr
	}
	s.Target = t
	if err := decodeSource(s, in.Type, in.Source, "spec.source"); err != nil {
		return nil, err
	}
	normalize(s)
	return s, nil
}

func present(m map[string]json.RawMessage, key string) bool {
	v, ok := m[key]
	return ok && string(bytes.TrimSpace(v)) != "null"
}

// decodeSource decodes raw as the source of a job of type typ into s.
func decodeSource(s *Spec, typ string, raw json.RawMessage, field string) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		if typ == TypeFilesystem || typ == TypeSQLite || typ == TypeVaultwarden {
			return errorf(field, "required", "%s is required", field)
		}
		raw = json.RawMessage(`{}`)
	}
	var err error
	switch typ {
	case TypeFilesystem:
		s.Filesystem = defaultFilesystem()
		err = strictDecode(raw, s.Filesystem)
	case TypeSQLite:
		s.SQLite = &SQLiteSource{}
		err = strictDecode(raw, s.SQLite)
	case TypeVaultwarden:
		s.Vaultwarden = defaultVaultwarden()
		err = strictDecode(raw, s.Vaultwarden)
	default:
		// Validate reports the unknown type with its field.
		return nil
	}
	if err != nil {
		return formatError(field, err)
	}
	return nil
}

// normalize turns JSON nulls into empty lists so the typed form never holds nil slices.
func normalize(s *Spec) {
	if !s.HasHooks() {
		s.Hooks = nil
	}
	if s.Notifications.Destinations == nil {
		s.Notifications.Destinations = map[string][]string{}
	}
	if fs := s.Filesystem; fs != nil {
		if fs.Paths == nil {
			fs.Paths = []string{}
		}
		if fs.Include == nil {
			fs.Include = []string{}
		}
		if fs.Exclude == nil {
			fs.Exclude = []string{}
		}
	}
}

// v2 envelope.
type specV2 struct {
	V             *int          `json:"v"`
	Pipeline      Pipeline      `json:"pipeline"`
	Notifications Notifications `json:"notifications"`
	Retention     Retention     `json:"retention"`
	Source        *sourceV2     `json:"source"`
	Target        *targetV2     `json:"target"`
	Hooks         *Hooks        `json:"hooks"`
}

type sourceV2 struct {
	Type    string          `json:"type"`
	Version *int            `json:"version"`
	Config  json.RawMessage `json:"config"`
}

type targetV2 struct {
	Type     string             `json:"type"`
	Version  *int               `json:"version"`
	Config   json.RawMessage    `json:"config"`
	AuthRefs map[string]authRef `json:"auth_refs"`
}

type authRef struct {
	SecretType string `json:"secret_type"`
	SecretName string `json:"secret_name"`
}

func parseV2(raw []byte, top map[string]json.RawMessage) (*Spec, error) {
	in := specV2{Pipeline: defaultPipeline(), Notifications: defaultNotifications(), Retention: defaultRetention()}
	if err := strictDecode(raw, &in); err != nil {
		return nil, formatError("spec", err)
	}
	if in.V != nil && *in.V != 2 {
		return nil, errorf("spec.v", "invalid_value", "spec.v must be 2 for the canonical shape (or give a top-level \"type\" for v1)")
	}
	if in.Source == nil {
		return nil, errorf("spec.source", "required", "spec.source is required")
	}
	if in.Target == nil {
		return nil, errorf("spec.target", "required", "spec.target is required")
	}
	s := &Spec{
		V: 1, Pipeline: in.Pipeline, Notifications: in.Notifications, Retention: in.Retention,
		Hooks: in.Hooks, HasRetention: present(top, "retention"),
	}
	if err := translateSourceV2(s, in.Source); err != nil {
		return nil, err
	}
	t, err := translateTargetV2(in.Target)
	if err != nil {
		return nil, err
	}
	s.Target = t
	normalize(s)
	return s, nil
}

func driverVersion(v *int, field string) (int, error) {
	if v == nil {
		return 1, nil
	}
	if *v < 1 {
		return 0, errorf(field, "invalid_value", "%s must be >= 1", field)
	}
	return *v, nil
}

func translateSourceV2(s *Spec, src *sourceV2) error {
	if strings.TrimSpace(src.Type) == "" {
		return errorf("spec.source.type", "required", "spec.source.type is required")
	}
	ver, err := driverVersion(src.Version, "spec.source.version")
	if err != nil {
		return err
	}
	switch src.Type {
	case TypeFilesystem, TypeSQLite, TypeVaultwarden:
		if ver == 1 {
			s.Type = src.Type
			cfg := src.Config
			if len(bytes.TrimSpace(cfg)) == 0 || string(bytes.TrimSpace(cfg)) == "null" {
				cfg = json.RawMessage(`{}`)
			}
			return decodeSource(s, src.Type, cfg, "spec.source.config")
		}
	}
	return errorf("spec.source.type", "unsupported", "unsupported source driver: %s@%d", src.Type, ver)
}

func strictDecode(raw []byte, v any) error { return strictjson.Decode(raw, v) }

// formatError describes a decode error without echoing input values.
func formatError(field string, err error) *Error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var problem string
	switch {
	case errors.As(err, &te):
		f := te.Field
		if f == "" {
			problem = fmt.Sprintf("a value must be %s", te.Type)
		} else {
			problem = fmt.Sprintf("%s must be %s", f, te.Type)
		}
	case errors.As(err, &se):
		problem = fmt.Sprintf("syntax error at byte %d", se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		problem = strings.TrimPrefix(err.Error(), "json: ")
	default:
		problem = err.Error()
	}
	return errorf(field, "invalid_format", "%s is not a valid job spec: %s", field, problem)
}

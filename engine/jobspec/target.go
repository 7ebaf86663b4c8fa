package jobspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/bastion-backup/bastion/engine/internal/strictjson"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/all"
)

// Target is where snapshots are stored: a target object of one of the drivers in
// engine/targets/all ({type, the driver's fields, secret_name}) plus the part size every target
// shares. Config is nil for a type no driver knows, which Validate refuses.
type Target struct {
	Type          string
	PartSizeBytes int64
	Config        targets.Config
	// raw keeps the fields of a target whose type no driver knows, so that it marshals back.
	raw json.RawMessage
}

// SecretName is the name of the node's secret the target reads its credential from, or "".
func (t Target) SecretName() string {
	if t.Config == nil {
		return ""
	}
	return t.Config.SecretName()
}

// Driver is the target's driver, if one knows its type.
func (t Target) Driver() (targets.Driver, bool) { return all.Registry.Lookup(t.Type) }

// Redacted is the stored description of the target (runs.target_snapshot_json).
func (t Target) Redacted() targets.Redacted {
	if t.Config == nil {
		return targets.NewRedacted(struct {
			Type string `json:"type"`
		}{t.Type})
	}
	return t.Config.Redact()
}

// MarshalJSON writes the v1 target object: the driver's object with part_size_bytes last (the
// field order of earlier versions, so a re-encoded spec keeps its bytes).
func (t Target) MarshalJSON() ([]byte, error) {
	obj := t.raw
	if t.Config != nil {
		b, err := json.Marshal(t.Config)
		if err != nil {
			return nil, fmt.Errorf("encode %s target: %w", t.Type, err)
		}
		obj = b
	}
	obj = bytes.TrimSpace(obj)
	if len(obj) < 2 || obj[len(obj)-1] != '}' {
		b, _ := json.Marshal(map[string]string{"type": t.Type})
		obj = b
	}
	var out bytes.Buffer
	out.Write(obj[:len(obj)-1])
	if len(bytes.TrimSpace(obj[1:len(obj)-1])) > 0 {
		out.WriteByte(',')
	}
	out.WriteString(`"part_size_bytes":` + strconv.FormatInt(t.PartSizeBytes, 10) + "}")
	return out.Bytes(), nil
}

// parseTargetV1 decodes the flat v1 target object. A null or "" field counts as absent, as it
// did when the target was one struct holding every type's fields.
func parseTargetV1(raw json.RawMessage) (Target, *Error) {
	const f = "spec.target"
	out := Target{PartSizeBytes: DefaultPartSizeBytes}
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return out, nil
	}
	fields, order, err := objectFields(raw)
	if err != nil {
		return out, errorf(f, "invalid_format", f+" must be a JSON object")
	}
	if ps, ok := fields["part_size_bytes"]; ok {
		if string(ps) != "null" {
			if err := json.Unmarshal(ps, &out.PartSizeBytes); err != nil {
				return out, errorf(f+".part_size_bytes", "invalid_format", f+".part_size_bytes must be an integer")
			}
		}
		delete(fields, "part_size_bytes")
	}
	if t, ok := fields["type"]; ok {
		if err := json.Unmarshal(t, &out.Type); err != nil {
			return out, errorf(f+".type", "invalid_format", f+".type must be a string")
		}
	}
	for k, v := range fields {
		if s := string(bytes.TrimSpace(v)); s == "null" || s == `""` {
			delete(fields, k)
		}
	}
	obj := encodeObject(fields, order)
	d, ok := all.Registry.Lookup(out.Type)
	if !ok {
		out.raw = obj
		return out, nil
	}
	c, perr := d.Parse(obj)
	if perr != nil {
		return out, targetFieldError(f, perr)
	}
	out.Config = c
	return out, nil
}

// translateTargetV2 turns a v2 target ({type, version, config, auth_refs}) into the v1 object
// its driver parses: config's fields plus "type" and the secret_name of the one auth ref of the
// driver's secret kind.
func translateTargetV2(t *targetV2) (Target, error) {
	if strings.TrimSpace(t.Type) == "" {
		return Target{}, errorf("spec.target.type", "required", "spec.target.type is required")
	}
	ver, err := driverVersion(t.Version, "spec.target.version")
	if err != nil {
		return Target{}, err
	}
	d, ok := all.Registry.Lookup(t.Type)
	if ver != 1 || !ok {
		return Target{}, errorf("spec.target.type", "unsupported", "unsupported target driver: %s@%d", t.Type, ver)
	}
	fields, order, ferr := objectFields(t.Config)
	if ferr != nil {
		return Target{}, errorf("spec.target.config", "invalid_format", "spec.target.config must be an object")
	}
	for _, key := range []string{"username", "password", "token", "secret_name"} {
		if _, ok := fields[key]; ok {
			return Target{}, errorf("spec.target.config."+key, "not_allowed",
				"spec.target.config.%s is not allowed; credentials must use target.auth_refs", key)
		}
	}
	if _, ok := fields["type"]; ok {
		return Target{}, errorf("spec.target.config.type", "not_allowed", "spec.target.config.type is not allowed; the type is spec.target.type")
	}
	out := Target{Type: t.Type, PartSizeBytes: DefaultPartSizeBytes}
	if ps, ok := fields["part_size_bytes"]; ok {
		var n *int64
		if err := json.Unmarshal(ps, &n); err != nil {
			return Target{}, errorf("spec.target.config.part_size_bytes", "invalid_format", "spec.target.config.part_size_bytes must be an integer")
		}
		if n != nil {
			out.PartSizeBytes = *n
		}
		delete(fields, "part_size_bytes")
	}
	typ, _ := json.Marshal(t.Type)
	fields["type"] = typ
	order = append([]string{"type"}, order...)
	kind := d.SecretKind()
	switch {
	case kind == "" && len(t.AuthRefs) > 0:
		return Target{}, errorf("spec.target.auth_refs", "not_allowed", "spec.target.auth_refs is not supported for a %s target", t.Type)
	case kind != "":
		name, err := secretFromAuthRefs(kind, t.AuthRefs)
		if err != nil {
			return Target{}, err
		}
		n, _ := json.Marshal(name)
		fields["secret_name"] = n
		order = append(order, "secret_name")
	}
	c, perr := d.Parse(encodeObject(fields, order))
	if perr != nil {
		return Target{}, targetFieldError("spec.target.config", perr)
	}
	out.Config = c
	return out, nil
}

// AuthRef is the auth_refs key of a target's credentials in a v2 spec: "<secret kind>_credentials"
// ("webdav_credentials").
func AuthRef(kind string) string { return kind + "_credentials" }

// AuthRefWebDAV is the auth_refs key of a WebDAV target's credentials in a v2 spec.
const AuthRefWebDAV = "webdav_credentials"

func secretFromAuthRefs(kind string, refs map[string]authRef) (string, error) {
	const field = "spec.target.auth_refs"
	ref, ok := refs[AuthRef(kind)]
	if !ok {
		n := 0
		for _, r := range refs {
			if strings.TrimSpace(r.SecretType) == kind && strings.TrimSpace(r.SecretName) != "" {
				ref = r
				n++
			}
		}
		switch {
		case n == 0:
			return "", errorf(field, "required", "spec.target.auth_refs must include %s credentials", kind)
		case n > 1:
			return "", errorf(field, "invalid_value", "spec.target.auth_refs has several %s credentials; only one is supported", kind)
		}
	}
	if strings.TrimSpace(ref.SecretType) != kind {
		return "", errorf(field, "invalid_value", "spec.target.auth_refs secret_type must be %s", kind)
	}
	name := strings.TrimSpace(ref.SecretName)
	if name == "" {
		return "", errorf(field, "required", "spec.target.auth_refs secret_name is required")
	}
	return name, nil
}

func (s *Spec) validateTarget() *Error {
	t := s.Target
	const f = "spec.target"
	switch {
	case t.Type == "":
		return errorf(f+".type", "required", f+".type is required (%s)", all.Registry.TypeList())
	case t.Config == nil:
		return errorf(f+".type", "invalid_value", f+".type must be %s", all.Registry.TypeList())
	}
	if err := t.Config.Validate(); err != nil {
		return targetFieldError(f, err)
	}
	if t.PartSizeBytes < MinPartSizeBytes {
		return errorf(f+".part_size_bytes", "out_of_range", f+".part_size_bytes must be >= %d (1 MiB)", MinPartSizeBytes)
	}
	return nil
}

// targetFieldError places a driver's *targets.FieldError under prefix.
func targetFieldError(prefix string, err error) *Error {
	var fe *targets.FieldError
	if !errors.As(err, &fe) {
		return errorf(prefix, "invalid_value", "%s is invalid: %s", prefix, err.Error())
	}
	field := prefix
	if fe.Field != "" {
		field += "." + fe.Field
	}
	return errorf(field, fe.Reason, "%s %s", field, fe.Message)
}

// objectFields splits a JSON object into its fields, keeping their order.
func objectFields(raw json.RawMessage) (map[string]json.RawMessage, []string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, nil, errors.New("not a JSON object")
	}
	order, err := strictjson.Keys(raw)
	if err != nil {
		return nil, nil, err
	}
	return m, order, nil
}

// encodeObject writes the fields present in m in the given order (each once).
func encodeObject(m map[string]json.RawMessage, order []string) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	seen := map[string]bool{}
	for _, k := range order {
		v, ok := m[k]
		if !ok || seen[k] {
			continue
		}
		seen[k] = true
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		key, _ := json.Marshal(k)
		b.Write(key)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

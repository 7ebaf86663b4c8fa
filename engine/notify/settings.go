package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/bastion-backup/bastion/engine/internal/strictjson"
	"github.com/bastion-backup/bastion/engine/notify/channel"
	"github.com/bastion-backup/bastion/engine/notify/channel/all"
	"github.com/bastion-backup/bastion/storage"
)

// builtin is the channel list (package all) that settings, templates and job specs are checked
// against. The Service sends with Options.Channels, which must carry the same names.
var builtin = all.Drivers()

// Channels returns the notification channels, in display order.
func Channels() channel.List { return all.Drivers() }

// AllChannels lists the channel names in display order.
var AllChannels = builtin.Names()

// ValidChannel reports whether c is a channel.
func ValidChannel(c string) bool {
	_, ok := builtin.Get(c)
	return ok
}

// storageKinds maps the channels to their secret kinds for the storage queries.
func storageKinds(l channel.List) []storage.NotificationKind {
	out := make([]storage.NotificationKind, len(l))
	for i, d := range l {
		out[i] = storage.NotificationKind{Channel: d.Name(), SecretKind: d.SecretKind()}
	}
	return out
}

// StorageKinds is the channel list as storage.NotificationQueueFilter.Kinds wants it.
func StorageKinds() []storage.NotificationKind { return storageKinds(builtin) }

// SecretKindOf returns the secret kind of channel's destinations ("" for an unknown channel).
func SecretKindOf(channel string) string {
	if d, ok := builtin.Get(channel); ok {
		return d.SecretKind()
	}
	return ""
}

// Settings is the document stored under settings key "notifications":
//
//	{"enabled": true, "channels": {"<channel>": {"enabled": true}, …},
//	 "templates": {"<template key>": "…", …, "verify_failed": {"<template key>": "…", …}}}
type Settings struct {
	Enabled   bool      `json:"enabled"`
	Channels  Switches  `json:"channels"`
	Templates Templates `json:"templates"`
}

// Switches holds the per-channel switches by channel name. Decoding merges into the switches
// already there (a document that leaves a channel out keeps it as it was) and refuses a name
// that is not a channel; encoding lists every channel in display order.
type Switches map[string]ChannelSettings

// ChannelSettings is one channel's switch.
type ChannelSettings struct {
	Enabled bool `json:"enabled"`
}

// Templates are the global message templates by template key (see template.go for
// placeholders): Run for a finished run, VerifyFailed for a failed restore drill. In JSON the
// run templates are the object's own keys and the drill's sit under "verify_failed".
type Templates struct {
	Run          map[string]string
	VerifyFailed map[string]string
}

// forEvent returns the templates of event kind (a storage.NotificationEvent…).
func (t Templates) forEvent(kind string) map[string]string {
	if kind == storage.NotificationEventVerifyFailed {
		return t.VerifyFailed
	}
	return t.Run
}

// ChannelEnabled reports whether channel is switched on (the global switch aside).
func (s Settings) ChannelEnabled(channel string) bool {
	return s.Channels[channel].Enabled
}

// DefaultSettings is what a Hub starts with: everything on, default templates.
func DefaultSettings() Settings {
	s := Settings{Enabled: true, Channels: Switches{},
		Templates: Templates{Run: map[string]string{}, VerifyFailed: map[string]string{}}}
	for _, d := range builtin {
		s.Channels[d.Name()] = ChannelSettings{Enabled: true}
	}
	for _, t := range builtin.Templates() {
		s.Templates.Run[t.Key], s.Templates.VerifyFailed[t.Key] = t.Run, t.VerifyFailed
	}
	return s
}

// clone copies s so that decoding into the copy leaves s alone.
func (s Settings) clone() Settings {
	out := s
	out.Channels = Switches{}
	for k, v := range s.Channels {
		out.Channels[k] = v
	}
	out.Templates = Templates{Run: map[string]string{}, VerifyFailed: map[string]string{}}
	for k, v := range s.Templates.Run {
		out.Templates.Run[k] = v
	}
	for k, v := range s.Templates.VerifyFailed {
		out.Templates.VerifyFailed[k] = v
	}
	return out
}

func unknownField(name string) error { return fmt.Errorf("json: unknown field %q", name) }

// decodeObject decodes raw (a JSON object, or null) as members by key, in document order.
func decodeObject(raw []byte) ([]string, map[string]json.RawMessage, error) {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, nil, err
	}
	// Document order keeps error reports deterministic (the first unknown key wins).
	keys, err := strictjson.Keys(raw)
	if err != nil {
		return nil, nil, err
	}
	return keys, m, nil
}

// decodeSwitches merges raw into sw; with strict, a name that is not a channel is an error,
// otherwise it is ignored (a document written by a newer Hub).
func decodeSwitches(raw []byte, sw Switches, strict bool) error {
	keys, m, err := decodeObject(raw)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if !ValidChannel(k) {
			if strict {
				return unknownField(k)
			}
			continue
		}
		cs := sw[k]
		if err := unmarshalStrict(m[k], &cs, strict); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				te.Field = k + "." + te.Field
			}
			return err
		}
		sw[k] = cs
	}
	return nil
}

func unmarshalStrict(raw []byte, v any, strict bool) error {
	if !strict {
		return json.Unmarshal(raw, v)
	}
	// raw is one member of an object already parsed, so nothing can follow it.
	return strictjson.Decode(raw, v)
}

func knownTemplate(key string) bool {
	for _, t := range builtin.Templates() {
		if t.Key == key {
			return true
		}
	}
	return false
}

// decodeTemplates merges raw's templates into t, those under "verify_failed" into
// t.VerifyFailed; with strict, a key that is not a template is an error, otherwise ignored.
func decodeTemplates(raw []byte, t *Templates, strict bool) error {
	keys, m, err := decodeObject(raw)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k == "verify_failed" {
			vkeys, vm, err := decodeObject(m[k])
			if err != nil {
				return err
			}
			for _, vk := range vkeys {
				if err := decodeTemplate(vk, vm[vk], t.VerifyFailed, strict); err != nil {
					return err
				}
			}
			continue
		}
		if err := decodeTemplate(k, m[k], t.Run, strict); err != nil {
			return err
		}
	}
	return nil
}

func decodeTemplate(key string, raw json.RawMessage, dst map[string]string, strict bool) error {
	if !knownTemplate(key) {
		if strict {
			return unknownField(key)
		}
		return nil
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil // as encoding/json does: null leaves a string alone
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return &json.UnmarshalTypeError{Value: "value", Type: reflect.TypeOf(v), Field: key}
	}
	dst[key] = v
	return nil
}

// UnmarshalJSON merges the switches of data into sw, refusing names that are not channels.
func (sw *Switches) UnmarshalJSON(data []byte) error {
	if *sw == nil {
		*sw = Switches{}
	}
	return decodeSwitches(data, *sw, true)
}

// MarshalJSON lists every channel in display order.
func (sw Switches) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, d := range builtin {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(d.Name())
		v, _ := json.Marshal(sw[d.Name()])
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON merges the templates of data into t, refusing keys that are not templates.
func (t *Templates) UnmarshalJSON(data []byte) error {
	if t.Run == nil {
		t.Run = map[string]string{}
	}
	if t.VerifyFailed == nil {
		t.VerifyFailed = map[string]string{}
	}
	return decodeTemplates(data, t, true)
}

// MarshalJSON writes every template in display order, the drill's under "verify_failed".
func (t Templates) MarshalJSON() ([]byte, error) {
	return marshalTemplates(t.Run, t.VerifyFailed), nil
}

func marshalTemplates(run, drill map[string]string) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, tpl := range builtin.Templates() {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(tpl.Key)
		v, _ := json.Marshal(run[tpl.Key])
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	if drill != nil {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteString(`"verify_failed":`)
		b.Write(marshalTemplates(drill, nil))
	}
	b.WriteByte('}')
	return b.Bytes()
}

// DecodeSettings parses a stored settings document over base: fields the document leaves out
// keep base's values (a document written before the webhook channel existed keeps it on), and
// channels or templates it names that this Hub does not know are ignored.
func DecodeSettings(base Settings, raw []byte) (Settings, error) {
	s := base.clone()
	var doc struct {
		Enabled   *bool           `json:"enabled"`
		Channels  json.RawMessage `json:"channels"`
		Templates json.RawMessage `json:"templates"`
	}
	err := json.Unmarshal(raw, &doc)
	if err == nil && doc.Channels != nil {
		err = decodeSwitches(doc.Channels, s.Channels, false)
	}
	if err == nil && doc.Templates != nil {
		err = decodeTemplates(doc.Templates, &s.Templates, false)
	}
	if err != nil {
		return Settings{}, fmt.Errorf("decode notification settings: %w", err)
	}
	if doc.Enabled != nil {
		s.Enabled = *doc.Enabled
	}
	return s, nil
}

// ValidateSettings rejects blank templates. Unknown placeholders are not an error: see
// UnknownPlaceholders.
func ValidateSettings(s Settings) error {
	tpls := builtin.Templates()
	for _, drill := range []bool{false, true} {
		for _, t := range tpls {
			field, what, value := "templates."+t.Key, t.Label, s.Templates.Run[t.Key]
			if drill {
				field, what, value = "templates.verify_failed."+t.Key, t.DrillLabel, s.Templates.VerifyFailed[t.Key]
			}
			if strings.TrimSpace(value) == "" {
				return &Error{Kind: KindInvalid, Code: "invalid_template", Field: field, Reason: "required",
					Message: what + " is required"}
			}
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
	b, _ := json.Marshal(s) // strings and bools always marshal
	return string(b)
}

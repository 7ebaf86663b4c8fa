// Package jobspec parses and validates the JSON spec of a backup job.
//
// Two input shapes are accepted: legacy v1 (a top-level string "type") and the canonical v2
// envelope ({"v":2, "source":{"type","version","config"}, "target":{..., "auth_refs"}}), which is
// translated to v1. The typed Spec is always v1, with every default applied; Validate checks it.
// Features the engine does not execute yet (raw_tree_v1 direct WebDAV upload, btrfs snapshots
// required, consistency fail with upload) are rejected by Validate, never silently ignored.
package jobspec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
)

// Source types.
const (
	TypeFilesystem  = "filesystem"
	TypeSQLite      = "sqlite"
	TypeVaultwarden = "vaultwarden"
)

// Pipeline formats and encryption types.
const (
	FormatArchiveV1 = "archive_v1"
	FormatRawTreeV1 = "raw_tree_v1"

	EncryptionNone      = "none"
	EncryptionAgeX25519 = "age_x25519"
)

// Filesystem source policies.
const (
	SymlinkKeep   = "keep"
	SymlinkFollow = "follow"
	SymlinkSkip   = "skip"

	HardlinkCopy = "copy"
	HardlinkKeep = "keep"

	ErrorFailFast = "fail_fast"
	ErrorSkipFail = "skip_fail"
	ErrorSkipOK   = "skip_ok"

	SnapshotOff      = "off"
	SnapshotAuto     = "auto"
	SnapshotRequired = "required"

	ConsistencyWarn   = "warn"
	ConsistencyFail   = "fail"
	ConsistencyIgnore = "ignore"
)

// Notification modes.
const (
	NotifyInherit = "inherit"
	NotifyCustom  = "custom"
)

// MiB and the part size bounds.
const (
	MiB                  = 1 << 20
	MinPartSizeBytes     = 1 * MiB
	DefaultPartSizeBytes = 256 * MiB
)

// Spec is a job spec in its v1 form with defaults applied. Exactly one of Filesystem, SQLite and
// Vaultwarden is set, matching Type.
type Spec struct {
	V             int
	Type          string
	Pipeline      Pipeline
	Notifications Notifications
	Retention     Retention
	Filesystem    *FilesystemSource
	SQLite        *SQLiteSource
	Vaultwarden   *VaultwardenSource
	Target        Target
	// Hooks are commands run before and after the backup (nil: none).
	Hooks *Hooks

	// HasRetention reports whether the input carried a "retention" object: a new job without
	// one inherits the Hub's default policy (hub.md §6).
	HasRetention bool
}

// Pipeline is how the source is packed.
type Pipeline struct {
	Format     string         `json:"format"`
	Encryption Encryption     `json:"encryption"`
	WebDAV     PipelineWebDAV `json:"webdav"`
}

// Encryption is {"type":"none"} or {"type":"age_x25519","key_name":"..."}.
type Encryption struct {
	Type    string `json:"type"`
	KeyName string `json:"key_name,omitempty"`
}

// PipelineWebDAV holds the raw-tree direct upload tuning (raw_tree_v1 only). The direct mode
// is not executed: mode must be off. limits.concurrency also bounds the parallel uploads of a
// staged raw tree.
type PipelineWebDAV struct {
	RawTreeDirect RawTreeDirect `json:"raw_tree_direct"`
}

// RawTreeDirect is pipeline.webdav.raw_tree_direct.
type RawTreeDirect struct {
	Mode         string  `json:"mode"` // off | auto | on
	ResumeBySize bool    `json:"resume_by_size"`
	Limits       *Limits `json:"limits"`
}

// Limits bounds the WebDAV request rate of a direct upload. Nil pointers mean "not set".
type Limits struct {
	Concurrency        int  `json:"concurrency"`
	PutQPS             *int `json:"put_qps"`
	HeadQPS            *int `json:"head_qps"`
	MkcolQPS           *int `json:"mkcol_qps"`
	Burst              *int `json:"burst"`
	RequestTimeoutSecs *int `json:"request_timeout_secs"`
	ConnectTimeoutSecs *int `json:"connect_timeout_secs"`
	MaxPutAttempts     *int `json:"max_put_attempts"`
}

// Notifications names the destinations of a job's notifications. With mode "inherit" the Hub's
// defaults apply and the lists are kept but unused.
//
// In JSON the lists are members named after their channel, beside "mode":
// {"mode": "custom", "wecom_bot": [...], "email": [...], "webhook": [...]}. This package knows no
// channel: any other member must be a list of names, and the Hub checks the names against its
// channel list (notify.ValidateJobNotifications) when a job is saved.
type Notifications struct {
	Mode string
	// Destinations are the destination (secret) names by channel name.
	Destinations map[string][]string
}

// alwaysListed are the lists the original's specs always carry, written even when empty so that a
// spec reads back as it did before the lists were keyed by channel.
var alwaysListed = []string{"wecom_bot", "email"}

// UnmarshalJSON reads "mode" and one list of names per other member; null lists read as empty.
func (n *Notifications) UnmarshalJSON(data []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	if m == nil {
		return nil
	}
	if n.Destinations == nil {
		n.Destinations = map[string][]string{}
	}
	for k, raw := range m {
		if k == "mode" {
			if err := json.Unmarshal(raw, &n.Mode); err != nil {
				return &json.UnmarshalTypeError{Value: "value", Type: reflect.TypeOf(""), Field: k}
			}
			continue
		}
		var names []string
		if err := json.Unmarshal(raw, &names); err != nil {
			return &json.UnmarshalTypeError{Value: "value", Type: reflect.TypeOf(names), Field: k}
		}
		if names == nil {
			names = []string{}
		}
		n.Destinations[k] = names
	}
	return nil
}

// MarshalJSON writes "mode", the lists the original always carries, then the other non-empty
// lists by channel name.
func (n Notifications) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	mode, _ := json.Marshal(n.Mode)
	b.WriteString(`{"mode":`)
	b.Write(mode)
	keys := make([]string, 0, len(n.Destinations))
	for k, v := range n.Destinations {
		if len(v) > 0 && !slices.Contains(alwaysListed, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range append(slices.Clone(alwaysListed), keys...) {
		names := n.Destinations[k]
		if names == nil {
			names = []string{}
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(names)
		if err != nil {
			return nil, err
		}
		b.WriteByte(',')
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Retention is the job's snapshot retention policy. The keep_hourly … keep_yearly rules (GFS,
// restic's forget semantics) are a Go-rewrite addition; they are omitted when unset so that a
// policy without them reads and writes exactly as before.
type Retention struct {
	Enabled          bool `json:"enabled"`
	KeepLast         *int `json:"keep_last"`
	KeepDays         *int `json:"keep_days"`
	KeepHourly       *int `json:"keep_hourly,omitempty"`
	KeepDaily        *int `json:"keep_daily,omitempty"`
	KeepWeekly       *int `json:"keep_weekly,omitempty"`
	KeepMonthly      *int `json:"keep_monthly,omitempty"`
	KeepYearly       *int `json:"keep_yearly,omitempty"`
	MaxDeletePerTick int  `json:"max_delete_per_tick"`
	MaxDeletePerDay  int  `json:"max_delete_per_day"`
}

// KeepsAny reports whether some keep rule is set to more than 0.
func (r Retention) KeepsAny() bool {
	for _, p := range []*int{r.KeepLast, r.KeepDays, r.KeepHourly, r.KeepDaily, r.KeepWeekly, r.KeepMonthly, r.KeepYearly} {
		if p != nil && *p > 0 {
			return true
		}
	}
	return false
}

// FilesystemSource is the source of a "filesystem" job.
type FilesystemSource struct {
	Paths                      []string `json:"paths"`
	Root                       string   `json:"root,omitempty"` // legacy: paths relative to root
	PreScan                    bool     `json:"pre_scan"`
	Include                    []string `json:"include"`
	Exclude                    []string `json:"exclude"`
	SymlinkPolicy              string   `json:"symlink_policy"`
	HardlinkPolicy             string   `json:"hardlink_policy"`
	ErrorPolicy                string   `json:"error_policy"`
	SnapshotMode               string   `json:"snapshot_mode"`
	SnapshotProvider           *string  `json:"snapshot_provider"`
	ConsistencyPolicy          string   `json:"consistency_policy"`
	ConsistencyFailThreshold   *int64   `json:"consistency_fail_threshold"`
	UploadOnConsistencyFailure *bool    `json:"upload_on_consistency_failure"`
}

// SQLiteSource is the source of a "sqlite" job.
type SQLiteSource struct {
	Path           string `json:"path"`
	IntegrityCheck bool   `json:"integrity_check"`
}

// VaultwardenSource is the source of a "vaultwarden" job: the host path of Vaultwarden's data/.
type VaultwardenSource struct {
	DataDir                    string `json:"data_dir"`
	ConsistencyPolicy          string `json:"consistency_policy"`
	ConsistencyFailThreshold   *int64 `json:"consistency_fail_threshold"`
	UploadOnConsistencyFailure *bool  `json:"upload_on_consistency_failure"`
}

// Error is a parse or validation failure. Field is a JSON path such as "spec.target.base_url";
// Reason is a stable word (invalid_format, required, invalid_value, out_of_range, unsupported,
// not_allowed); Message names the rule.
type Error struct {
	Field   string
	Reason  string
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorf(field, reason, format string, args ...any) *Error {
	return &Error{Field: field, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// ConsistencyThreshold is the number of consistency issues a "fail" policy tolerates.
func (s *Spec) ConsistencyThreshold() int64 {
	var p *int64
	switch {
	case s.Filesystem != nil:
		p = s.Filesystem.ConsistencyFailThreshold
	case s.Vaultwarden != nil:
		p = s.Vaultwarden.ConsistencyFailThreshold
	}
	if p == nil {
		return 0
	}
	return *p
}

// specJSON is the v1 wire shape.
type specJSON struct {
	V             int             `json:"v"`
	Type          string          `json:"type"`
	Pipeline      Pipeline        `json:"pipeline"`
	Notifications Notifications   `json:"notifications"`
	Retention     Retention       `json:"retention"`
	Source        json.RawMessage `json:"source"`
	Target        json.RawMessage `json:"target"`
	Hooks         *Hooks          `json:"hooks,omitempty"`
}

// MarshalJSON writes the canonical v1 form (what the UI sends and the original stores).
func (s Spec) MarshalJSON() ([]byte, error) {
	var src any
	switch {
	case s.Filesystem != nil:
		src = s.Filesystem
	case s.SQLite != nil:
		src = s.SQLite
	case s.Vaultwarden != nil:
		src = s.Vaultwarden
	default:
		src = struct{}{}
	}
	raw, err := json.Marshal(src)
	if err != nil {
		return nil, fmt.Errorf("encode job spec source: %w", err)
	}
	target, err := s.Target.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return json.Marshal(specJSON{
		V: s.V, Type: s.Type, Pipeline: s.Pipeline, Notifications: s.Notifications, Retention: s.Retention,
		Source: raw, Target: target, Hooks: s.Hooks,
	})
}

package jobspec

import (
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/gobwas/glob"

	"github.com/bastion-backup/bastion/engine/internal/strictjson"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
)

// Bounds of the validation rules (backup.md §2, hub.md §6).
const (
	MaxKeepLast         = 10_000
	MaxKeepDays         = 3650
	MaxKeepPeriods      = 10_000
	MaxDeletePerTick    = 10_000
	MaxDeletePerDay     = 100_000
	MaxConcurrency      = 128
	MaxQPS              = 10_000
	MaxBurst            = 100_000
	MaxTimeoutSecs      = 3600
	MaxPutAttemptsLimit = 20
)

// Validate checks every rule of the spec and returns the first violation as *Error.
func (s *Spec) Validate() error {
	if s.V != 1 {
		return errorf("spec.v", "invalid_value", "unsupported job spec version %d (v must be 1, or 2 for the canonical shape)", s.V)
	}
	switch s.Type {
	case TypeFilesystem, TypeSQLite, TypeVaultwarden:
	case "":
		return errorf("spec.type", "required", "spec.type is required (filesystem, sqlite or vaultwarden)")
	default:
		return errorf("spec.type", "invalid_value", "spec.type must be filesystem, sqlite or vaultwarden")
	}
	if (s.Type == TypeFilesystem) != (s.Filesystem != nil) || (s.Type == TypeSQLite) != (s.SQLite != nil) ||
		(s.Type == TypeVaultwarden) != (s.Vaultwarden != nil) {
		return errorf("spec.source", "required", "spec.source must be the source of a %s job", s.Type)
	}
	for _, check := range []func() *Error{
		s.validatePipeline, s.validateRawTreeDirect, s.validateNotifications, s.validateRetention,
		s.validateSource, s.validateTarget, s.validateHooks,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Spec) validatePipeline() *Error {
	p := s.Pipeline
	switch p.Format {
	case FormatArchiveV1, FormatRawTreeV1:
	default:
		return errorf("spec.pipeline.format", "invalid_value", "spec.pipeline.format must be archive_v1 or raw_tree_v1")
	}
	switch p.Encryption.Type {
	case EncryptionNone:
		if p.Encryption.KeyName != "" {
			return errorf("spec.pipeline.encryption.key_name", "not_allowed", "spec.pipeline.encryption.key_name is only allowed with type age_x25519")
		}
	case EncryptionAgeX25519:
		if strings.TrimSpace(p.Encryption.KeyName) == "" {
			return errorf("spec.pipeline.encryption.key_name", "required", "spec.pipeline.encryption.key_name is required for age_x25519 encryption")
		}
	default:
		return errorf("spec.pipeline.encryption.type", "invalid_value", "spec.pipeline.encryption.type must be none or age_x25519")
	}
	if p.Format == FormatRawTreeV1 {
		if p.Encryption.Type != EncryptionNone {
			return errorf("spec.pipeline.encryption", "not_allowed", "spec.pipeline.encryption is not supported when spec.pipeline.format is raw_tree_v1")
		}
		if s.Type == TypeVaultwarden {
			return errorf("spec.pipeline.format", "unsupported", "vaultwarden jobs only support spec.pipeline.format archive_v1")
		}
	}
	return nil
}

func (s *Spec) validateRawTreeDirect() *Error {
	d := s.Pipeline.WebDAV.RawTreeDirect
	const f = "spec.pipeline.webdav.raw_tree_direct"
	switch d.Mode {
	case "off", "auto", "on":
	default:
		return errorf(f+".mode", "invalid_value", f+".mode must be off, auto or on")
	}
	if d.Mode != "off" {
		switch {
		case s.Type != TypeFilesystem:
			return errorf(f+".mode", "not_allowed", f+" is not supported for %s jobs", s.Type)
		case s.Pipeline.Format != FormatRawTreeV1:
			return errorf(f+".mode", "not_allowed", f+" requires spec.pipeline.format raw_tree_v1")
		case s.Target.Type != webdav.Type:
			return errorf(f+".mode", "not_allowed", f+" requires spec.target.type webdav")
		case s.Filesystem.ConsistencyPolicy == ConsistencyFail && !boolOr(s.Filesystem.UploadOnConsistencyFailure, false):
			return errorf(f+".mode", "not_allowed", f+" is not allowed when spec.source.consistency_policy is fail and spec.source.upload_on_consistency_failure is false")
		default:
			// raw_tree_v1 to WebDAV is uploaded from staging (MKCOL/HEAD/PUT per file); the
			// direct mode that PUTs from the source is not built.
			return errorf(f+".mode", "unsupported", f+".mode %s is not supported by this version; set it to off (raw_tree_v1 is uploaded from staging)", d.Mode)
		}
	}
	l := d.Limits
	if l == nil {
		return nil
	}
	if l.Concurrency < 1 || l.Concurrency > MaxConcurrency {
		return errorf(f+".limits.concurrency", "out_of_range", f+".limits.concurrency must be within 1..%d", MaxConcurrency)
	}
	for _, q := range []struct {
		name     string
		v        *int
		min, max int
	}{
		{"put_qps", l.PutQPS, 1, MaxQPS}, {"head_qps", l.HeadQPS, 1, MaxQPS}, {"mkcol_qps", l.MkcolQPS, 1, MaxQPS},
		{"burst", l.Burst, 1, MaxBurst},
		{"request_timeout_secs", l.RequestTimeoutSecs, 1, MaxTimeoutSecs},
		{"connect_timeout_secs", l.ConnectTimeoutSecs, 1, MaxTimeoutSecs},
		{"max_put_attempts", l.MaxPutAttempts, 1, MaxPutAttemptsLimit},
	} {
		if q.v != nil && (*q.v < q.min || *q.v > q.max) {
			return errorf(f+".limits."+q.name, "out_of_range", f+".limits.%s must be within %d..%d", q.name, q.min, q.max)
		}
	}
	return nil
}

func (s *Spec) validateNotifications() *Error {
	n := s.Notifications
	switch n.Mode {
	case NotifyInherit, NotifyCustom:
	default:
		return errorf("spec.notifications.mode", "invalid_value", "spec.notifications.mode must be inherit or custom")
	}
	if n.Mode != NotifyCustom {
		return nil
	}
	channels := make([]string, 0, len(n.Destinations))
	for ch := range n.Destinations {
		channels = append(channels, ch)
	}
	slices.Sort(channels) // the first error is the same on every call
	for _, ch := range channels {
		for _, name := range n.Destinations[ch] {
			if strings.TrimSpace(name) == "" {
				return errorf("spec.notifications."+ch, "required", "spec.notifications.%s destination names must not be blank", ch)
			}
		}
	}
	return nil
}

func (s *Spec) validateRetention() *Error {
	r := s.Retention
	const f = "spec.retention"
	if r.KeepLast != nil && (*r.KeepLast < 0 || *r.KeepLast > MaxKeepLast) {
		return errorf(f+".keep_last", "out_of_range", f+".keep_last must be within 0..%d", MaxKeepLast)
	}
	if r.KeepDays != nil && (*r.KeepDays < 0 || *r.KeepDays > MaxKeepDays) {
		return errorf(f+".keep_days", "out_of_range", f+".keep_days must be within 0..%d", MaxKeepDays)
	}
	for _, p := range []struct {
		name string
		v    *int
	}{{"keep_hourly", r.KeepHourly}, {"keep_daily", r.KeepDaily}, {"keep_weekly", r.KeepWeekly},
		{"keep_monthly", r.KeepMonthly}, {"keep_yearly", r.KeepYearly}} {
		if p.v != nil && (*p.v < 0 || *p.v > MaxKeepPeriods) {
			return errorf(f+"."+p.name, "out_of_range", f+".%s must be within 0..%d", p.name, MaxKeepPeriods)
		}
	}
	if r.MaxDeletePerTick < 1 || r.MaxDeletePerTick > MaxDeletePerTick {
		return errorf(f+".max_delete_per_tick", "out_of_range", f+".max_delete_per_tick must be within 1..%d", MaxDeletePerTick)
	}
	if r.MaxDeletePerDay < 1 || r.MaxDeletePerDay > MaxDeletePerDay {
		return errorf(f+".max_delete_per_day", "out_of_range", f+".max_delete_per_day must be within 1..%d", MaxDeletePerDay)
	}
	if r.Enabled && !r.KeepsAny() {
		return errorf(f+".enabled", "required", f+".enabled needs keep_last or keep_days (or one of keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly) greater than 0")
	}
	return nil
}

func (s *Spec) validateSource() *Error {
	switch {
	case s.Filesystem != nil:
		return validateFilesystem(s.Filesystem)
	case s.SQLite != nil:
		if strings.TrimSpace(s.SQLite.Path) == "" {
			return errorf("spec.source.path", "required", "spec.source.path is required")
		}
		return checkAbsolute("spec.source.path", s.SQLite.Path)
	case s.Vaultwarden != nil:
		v := s.Vaultwarden
		if strings.TrimSpace(v.DataDir) == "" {
			return errorf("spec.source.data_dir", "required", "spec.source.data_dir is required")
		}
		if err := checkAbsolute("spec.source.data_dir", v.DataDir); err != nil {
			return err
		}
		return validateConsistency(v.ConsistencyPolicy, v.ConsistencyFailThreshold, v.UploadOnConsistencyFailure)
	}
	return nil
}

func validateFilesystem(fs *FilesystemSource) *Error {
	const f = "spec.source"
	hasPath := false
	for i, p := range fs.Paths {
		if strings.TrimSpace(p) == "" {
			continue // blank entries are dropped by the walker (hygiene)
		}
		hasPath = true
		if err := checkAbsolute(f+".paths["+strconv.Itoa(i)+"]", p); err != nil {
			return err
		}
	}
	if strings.TrimSpace(fs.Root) != "" {
		if hasPath {
			return errorf(f+".root", "not_allowed", f+".root (legacy) cannot be combined with "+f+".paths")
		}
		if err := checkAbsolute(f+".root", fs.Root); err != nil {
			return err
		}
	} else if !hasPath {
		return errorf(f+".paths", "required", f+".paths needs at least one non-blank path (or legacy "+f+".root)")
	}
	for _, g := range []struct {
		name string
		pats []string
	}{{"include", fs.Include}, {"exclude", fs.Exclude}} {
		for i, p := range g.pats {
			field := f + "." + g.name + "[" + strconv.Itoa(i) + "]"
			if p == "" {
				return errorf(field, "required", "%s must not be empty", field)
			}
			if _, err := glob.Compile(p); err != nil {
				return errorf(field, "invalid_format", "%s is not a valid glob: %s", field, err.Error())
			}
		}
	}
	switch fs.SymlinkPolicy {
	case SymlinkKeep, SymlinkFollow, SymlinkSkip:
	default:
		return errorf(f+".symlink_policy", "invalid_value", f+".symlink_policy must be keep, follow or skip")
	}
	switch fs.HardlinkPolicy {
	case HardlinkCopy, HardlinkKeep:
	default:
		return errorf(f+".hardlink_policy", "invalid_value", f+".hardlink_policy must be copy or keep")
	}
	switch fs.ErrorPolicy {
	case ErrorFailFast, ErrorSkipFail, ErrorSkipOK:
	default:
		return errorf(f+".error_policy", "invalid_value", f+".error_policy must be fail_fast, skip_fail or skip_ok")
	}
	switch fs.SnapshotMode {
	case SnapshotOff, SnapshotAuto:
		// auto reads the live tree with a snapshot_unavailable warning while no provider exists.
	case SnapshotRequired:
		return errorf(f+".snapshot_mode", "unsupported", f+".snapshot_mode required is not supported by this version yet (no snapshot provider); use off or auto")
	default:
		return errorf(f+".snapshot_mode", "invalid_value", f+".snapshot_mode must be off, auto or required")
	}
	if fs.SnapshotProvider != nil && *fs.SnapshotProvider != "btrfs" {
		return errorf(f+".snapshot_provider", "invalid_value", f+".snapshot_provider must be btrfs or null")
	}
	return validateConsistency(fs.ConsistencyPolicy, fs.ConsistencyFailThreshold, fs.UploadOnConsistencyFailure)
}

func validateConsistency(policy string, threshold *int64, upload *bool) *Error {
	const f = "spec.source"
	switch policy {
	case ConsistencyWarn, ConsistencyFail, ConsistencyIgnore:
	default:
		return errorf(f+".consistency_policy", "invalid_value", f+".consistency_policy must be warn, fail or ignore")
	}
	if threshold != nil && *threshold < 0 {
		return errorf(f+".consistency_fail_threshold", "out_of_range", f+".consistency_fail_threshold must be >= 0")
	}
	if policy == ConsistencyFail && boolOr(upload, false) {
		return errorf(f+".upload_on_consistency_failure", "unsupported", f+".upload_on_consistency_failure true is not supported by this version yet; a failed consistency check uploads nothing")
	}
	return nil
}

// checkAbsolute requires an absolute path without ".." segments: the archive path is derived
// from it, and a relative one would depend on the working directory of whoever runs the job.
func checkAbsolute(field, p string) *Error {
	if !filepath.IsAbs(p) && !path.IsAbs(p) {
		return errorf(field, "invalid_format", "%s must be an absolute path", field)
	}
	for _, seg := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if seg == ".." {
			return errorf(field, "invalid_format", "%s must not contain '..'", field)
		}
	}
	return nil
}

func boolOr(p *bool, d bool) bool {
	if p == nil {
		return d
	}
	return *p
}

// ParseRetention reads a retention policy on its own (the Hub's default for new jobs), with the
// defaults and checks a job's spec.retention gets. Error fields are relative to the policy
// ("keep_last").
func ParseRetention(b []byte) (Retention, *Error) {
	r := defaultRetention()
	if err := strictjson.Decode(b, &r); err != nil {
		return Retention{}, errorf("", "invalid", "retention must be a JSON object of keep_* rules and delete limits: %v", err)
	}
	s := Spec{Retention: r}
	if e := s.validateRetention(); e != nil {
		e.Field = strings.TrimPrefix(strings.TrimPrefix(e.Field, "spec.retention"), ".")
		e.Message = strings.ReplaceAll(e.Message, "spec.retention.", "")
		return Retention{}, e
	}
	return r, nil
}

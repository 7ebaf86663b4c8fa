package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// RuntimeConfig is what the Hub resolved at start (flags, environment, saved settings, defaults),
// for GET/PUT /api/settings/hub-runtime-config.
type RuntimeConfig struct {
	// Fields maps a field's JSON name (bind_host, run_retention_days, …) to its value at start.
	Fields map[string]RuntimeField
	// Live carries the settings that apply without a restart; nil: every change waits for one.
	Live *LiveSettings
}

// RuntimeField is one setting as resolved at start.
type RuntimeField struct {
	Value  any
	Source string // cli, env, db, default
	Env    string // its environment variable(s)
	// Default is the value when neither flag, environment nor saved settings give one; a live
	// field falls back to it when its saved value is cleared.
	Default any
}

// LiveSettings are the runtime settings the Hub's loops read at every pass: a saved change
// applies at the next pass without a restart.
type LiveSettings struct {
	runRetentionDays, auditRetentionDays atomic.Int64
}

// NewLiveSettings starts with the values resolved at start.
func NewLiveSettings(runRetentionDays, auditRetentionDays int) *LiveSettings {
	l := &LiveSettings{}
	l.runRetentionDays.Store(int64(runRetentionDays))
	l.auditRetentionDays.Store(int64(auditRetentionDays))
	return l
}

// RunRetentionDays is how long run history is kept now.
func (l *LiveSettings) RunRetentionDays() int { return int(l.runRetentionDays.Load()) }

// AuditRetentionDays is how long audit entries are kept now.
func (l *LiveSettings) AuditRetentionDays() int { return int(l.auditRetentionDays.Load()) }

// savedRuntimeConfig is settings key hub_runtime_config_v1. Every field is optional: absent means
// "not saved", so flags, environment or the default decide. Names follow the original.
type savedRuntimeConfig struct {
	HubTimezone            *string          `json:"hub_timezone,omitempty"`
	RunRetentionDays       *int             `json:"run_retention_days,omitempty"`
	AuditRetentionDays     *int             `json:"audit_retention_days,omitempty"`
	IncompleteCleanupDays  *int             `json:"incomplete_cleanup_days,omitempty"`
	PublicBaseURL          *string          `json:"public_base_url,omitempty"`
	LogFilter              *string          `json:"log_filter,omitempty"`
	LogFile                *string          `json:"log_file,omitempty"`
	LogRotation            *string          `json:"log_rotation,omitempty"`
	LogKeepFiles           *int             `json:"log_keep_files,omitempty"`
	DefaultBackupRetention *json.RawMessage `json:"default_backup_retention,omitempty"`
}

// runtimeField describes a field of the page: editable ones can be saved; live ones apply
// without a restart.
type runtimeField struct {
	name     string
	editable bool
	live     bool
}

// runtimeFields in display order. Bind address, data directory, insecure mode, trusted proxies
// and debug errors never come from the database (hub.md §2), so they are shown, not edited.
var runtimeFields = []runtimeField{
	{name: "bind_host"}, {name: "bind_port"}, {name: "data_dir"}, {name: "insecure_http"},
	{name: "trusted_proxies"}, {name: "debug_errors"},
	{name: "hub_timezone", editable: true},
	{name: "run_retention_days", editable: true, live: true},
	{name: "audit_retention_days", editable: true, live: true},
	{name: "incomplete_cleanup_days", editable: true},
	{name: "public_base_url", editable: true},
	{name: "log_filter", editable: true},
	{name: "log_file", editable: true},
	{name: "log_rotation", editable: true},
	{name: "log_keep_files", editable: true},
	{name: "default_backup_retention", editable: true, live: true},
}

type runtimeFieldMeta struct {
	Env             string `json:"env"`
	Source          string `json:"source"`
	Editable        bool   `json:"editable"`
	Overridden      bool   `json:"overridden"`
	RequiresRestart bool   `json:"requires_restart"`
	// PendingRestart: the saved value differs from the effective one and waits for a restart.
	PendingRestart bool `json:"pending_restart"`
}

type runtimeConfigResponse struct {
	// RequiresRestart is true when some saved value waits for a restart (PendingRestart lists them).
	RequiresRestart bool                        `json:"requires_restart"`
	PendingRestart  []string                    `json:"pending_restart"`
	Effective       map[string]any              `json:"effective"`
	Saved           savedRuntimeConfig          `json:"saved"`
	Fields          map[string]runtimeFieldMeta `json:"fields"`
}

func (s *Server) runtimeConfigRoutes(r chi.Router) {
	r.Get("/settings/hub-runtime-config", s.getRuntimeConfig)
	r.Put("/settings/hub-runtime-config", s.putRuntimeConfig)
}

func overridden(source string) bool { return source == "cli" || source == "env" }

func (s *Server) runtimeStart() RuntimeConfig {
	if s.cfg.Runtime == nil {
		return RuntimeConfig{}
	}
	return *s.cfg.Runtime
}

// loadSavedRuntimeConfig reads the saved document; a missing one is empty.
func loadSavedRuntimeConfig(ctx context.Context, q storage.Q) (savedRuntimeConfig, error) {
	var out savedRuntimeConfig
	raw, err := q.GetSetting(ctx, storage.SettingHubRuntimeConfig)
	if errors.Is(err, storage.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		// A document an older build wrote (option names such as "log") or a hand edit: show what
		// can be read rather than failing the page.
		zerolog.Ctx(ctx).Warn().Err(err).Msg("saved runtime config is partly unreadable")
	}
	return out, nil
}

// savedValue is the saved value of a field, or nil.
func (c savedRuntimeConfig) savedValue(name string) any {
	switch name {
	case "hub_timezone":
		return derefAny(c.HubTimezone)
	case "run_retention_days":
		return derefAny(c.RunRetentionDays)
	case "audit_retention_days":
		return derefAny(c.AuditRetentionDays)
	case "incomplete_cleanup_days":
		return derefAny(c.IncompleteCleanupDays)
	case "public_base_url":
		return derefAny(c.PublicBaseURL)
	case "log_filter":
		return derefAny(c.LogFilter)
	case "log_file":
		return derefAny(c.LogFile)
	case "log_rotation":
		return derefAny(c.LogRotation)
	case "log_keep_files":
		return derefAny(c.LogKeepFiles)
	case "default_backup_retention":
		return derefAny(c.DefaultBackupRetention)
	}
	return nil
}

func derefAny[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func (s *Server) runtimeConfigView(saved savedRuntimeConfig) runtimeConfigResponse {
	start := s.runtimeStart()
	out := runtimeConfigResponse{PendingRestart: []string{}, Effective: map[string]any{}, Saved: saved,
		Fields: map[string]runtimeFieldMeta{}}
	for _, f := range runtimeFields {
		sf := start.Fields[f.name]
		src := sf.Source
		if src == "" {
			src = "default"
		}
		meta := runtimeFieldMeta{Env: sf.Env, Source: src, Overridden: overridden(src),
			Editable: f.editable && !overridden(src), RequiresRestart: !f.live}
		value := sf.Value
		sv := saved.savedValue(f.name)
		switch {
		case f.name == "default_backup_retention":
			// Read from the settings at every job creation: the saved policy is the effective one.
			meta.Env, meta.Source, meta.Overridden, meta.Editable = "", "default", false, true
			value = nil
			if sv != nil {
				value, meta.Source = sv, "db"
			}
		case f.live && start.Live != nil && !meta.Overridden:
			value = s.liveValue(f.name, start.Live)
			meta.Source = "default"
			if sv != nil {
				meta.Source = "db"
			}
		case f.editable && !meta.Overridden && sv != nil && !jsonEqual(sv, value):
			meta.PendingRestart = true
			out.PendingRestart = append(out.PendingRestart, f.name)
		case f.editable && !meta.Overridden && sv == nil && src == "db":
			// The saved value was cleared: the default applies at the next start.
			meta.PendingRestart = true
			out.PendingRestart = append(out.PendingRestart, f.name)
		}
		out.Effective[f.name] = value
		out.Fields[f.name] = meta
	}
	out.RequiresRestart = len(out.PendingRestart) > 0
	return out
}

func (s *Server) liveValue(name string, l *LiveSettings) any {
	switch name {
	case "run_retention_days":
		return l.RunRetentionDays()
	case "audit_retention_days":
		return l.AuditRetentionDays()
	}
	return nil
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func (s *Server) getRuntimeConfig(w http.ResponseWriter, r *http.Request) {
	saved, err := loadSavedRuntimeConfig(r.Context(), s.db.Reader())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, s.runtimeConfigView(saved))
}

// putRuntimeConfig replaces the saved document. Every field is checked and all problems are
// reported at once; nothing is saved unless all pass. Live fields not overridden by a flag or
// the environment apply at once.
func (s *Server) putRuntimeConfig(w http.ResponseWriter, r *http.Request) {
	var in savedRuntimeConfig
	if err := respond.DecodeJSON(r, &in); err != nil {
		respond.Error(w, r, err)
		return
	}
	if err := validateRuntimeConfig(&in); err != nil {
		respond.Error(w, r, err)
		return
	}
	b, err := json.Marshal(in)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if err := s.db.Writer().PutSetting(r.Context(), storage.SettingHubRuntimeConfig, string(b), s.now().Unix()); err != nil {
		respond.Error(w, r, fmt.Errorf("save runtime config: %w", err))
		return
	}
	start := s.runtimeStart()
	if l := start.Live; l != nil {
		apply := func(name string, saved *int, dst *atomic.Int64) {
			f := start.Fields[name]
			if overridden(f.Source) {
				return
			}
			v, _ := f.Default.(int)
			if saved != nil {
				v = *saved
			}
			dst.Store(int64(v))
		}
		apply("run_retention_days", in.RunRetentionDays, &l.runRetentionDays)
		apply("audit_retention_days", in.AuditRetentionDays, &l.auditRetentionDays)
	}
	zerolog.Ctx(r.Context()).Info().Msg("hub runtime config saved")
	respond.NoContent(w)
}

// validateRuntimeConfig normalizes in (trimmed strings, empty → not saved) and checks it with the
// rules the flags follow.
func validateRuntimeConfig(in *savedRuntimeConfig) error {
	var bad []respond.Violation
	var first string
	add := func(field, reason, msg string, params map[string]any) {
		if first == "" {
			first = field + ": " + msg
		}
		bad = append(bad, respond.Violation{Field: field, Reason: reason, Params: params})
	}
	trim := func(p **string) {
		if *p != nil {
			v := strings.TrimSpace(**p)
			if v == "" {
				*p = nil
			} else {
				*p = &v
			}
		}
	}
	for _, p := range []**string{&in.HubTimezone, &in.PublicBaseURL, &in.LogFilter, &in.LogFile, &in.LogRotation} {
		trim(p)
	}
	intRange := func(field string, v *int, min, max int) {
		if v != nil && (*v < min || *v > max) {
			add(field, "out_of_range", fmt.Sprintf("must be a whole number from %d to %d", min, max),
				map[string]any{"min": min, "max": max})
		}
	}
	intRange("run_retention_days", in.RunRetentionDays, 1, 1<<30)
	intRange("audit_retention_days", in.AuditRetentionDays, 1, 1<<30)
	intRange("incomplete_cleanup_days", in.IncompleteCleanupDays, 0, 1<<30)
	intRange("log_keep_files", in.LogKeepFiles, 1, 100000)
	if v := in.HubTimezone; v != nil {
		if _, err := time.LoadLocation(*v); err != nil || *v == "Local" {
			add("hub_timezone", "invalid_timezone", "must be an IANA timezone name such as Europe/Berlin", nil)
		}
	}
	if v := in.PublicBaseURL; v != nil {
		if n, err := normalizeBaseURL(*v); err != nil {
			add("public_base_url", "invalid_url", err.Error(), nil)
		} else {
			in.PublicBaseURL = &n
		}
	}
	if v := in.LogFilter; v != nil && !validLogFilter(*v) {
		add("log_filter", "invalid_log_filter", "must be a level: trace, debug, info, warn or error", nil)
	}
	if v := in.LogRotation; v != nil {
		low := strings.ToLower(*v)
		in.LogRotation = &low
		if !slices.Contains([]string{"never", "hourly", "daily"}, low) {
			add("log_rotation", "invalid_log_rotation", "must be never, hourly or daily", nil)
		}
	}
	if v := in.DefaultBackupRetention; v != nil && string(*v) != "null" {
		pol, je := jobspec.ParseRetention(*v)
		if je != nil {
			field := "default_backup_retention"
			if je.Field != "" {
				field += "." + je.Field
			}
			add(field, je.Reason, je.Message, nil)
		} else {
			b, _ := json.Marshal(pol)
			raw := json.RawMessage(b)
			in.DefaultBackupRetention = &raw
		}
	} else {
		in.DefaultBackupRetention = nil
	}
	if len(bad) == 0 {
		return nil
	}
	e := respond.BadRequest("invalid_runtime_config", first).Reason(bad[0].Reason).Field(bad[0].Field)
	e.Details.Violations = bad
	return e
}

// validLogFilter accepts what the Hub's logger reads: a level, or a comma list of directives
// whose first bare entry is the level (module=level directives from RUST_LOG are ignored).
func validLogFilter(v string) bool {
	for _, part := range strings.Split(v, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		if part == "" || strings.Contains(part, "=") {
			continue
		}
		return slices.Contains([]string{"trace", "debug", "info", "warn", "warning", "error"}, part)
	}
	return true
}

// normalizeBaseURL is the rule of --public-base-url: http(s) with a host, no query, fragment or
// user name, without a trailing slash.
func normalizeBaseURL(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("must be an http or https URL with a host")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", errors.New("must not have a query, fragment or user name")
	}
	return strings.TrimRight(u.String(), "/"), nil
}

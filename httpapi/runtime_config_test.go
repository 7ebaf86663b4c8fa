package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// startRuntimeHub runs the API with a start-up configuration in which the audit retention was
// given by an environment variable and everything else came from defaults.
func startRuntimeHub(t *testing.T) (*apitest.Hub, *httpapi.RuntimeConfig) {
	t.Helper()
	rc := &httpapi.RuntimeConfig{
		Fields: map[string]httpapi.RuntimeField{
			"bind_host":            {Value: "127.0.0.1", Source: "default", Env: "BASTION_HOST", Default: "127.0.0.1"},
			"hub_timezone":         {Value: "UTC", Source: "default", Env: "BASTION_HUB_TIMEZONE"},
			"run_retention_days":   {Value: 180, Source: "default", Env: "BASTION_RUN_RETENTION_DAYS", Default: 180},
			"audit_retention_days": {Value: 30, Source: "env", Env: "BASTION_AUDIT_RETENTION_DAYS", Default: 180},
			"log_filter":           {Value: "info", Source: "cli", Env: "BASTION_LOG / RUST_LOG", Default: "info"},
		},
		Live: httpapi.NewLiveSettings(180, 30),
	}
	h := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) { cfg.Runtime = rc }))
	return h, rc
}

func TestRuntimeConfigRoundTrip(t *testing.T) {
	t.Parallel()
	h, _ := startRuntimeHub(t)
	c := h.Login(t)

	status, got := c.Get(t, "/api/settings/hub-runtime-config")
	if status != http.StatusOK {
		t.Fatalf("GET: %d %v", status, got)
	}
	if got["requires_restart"] != false || len(got["saved"].(map[string]any)) != 0 {
		t.Fatalf("fresh Hub: %v", got)
	}
	saved := map[string]any{
		"hub_timezone": " Europe/Berlin ", "run_retention_days": 90, "incomplete_cleanup_days": 0,
		"public_base_url": "https://backup.example.com/", "log_rotation": "HOURLY", "log_keep_files": 5,
		"default_backup_retention": map[string]any{"enabled": true, "keep_last": 7},
	}
	if resp := c.Do(t, http.MethodPut, "/api/settings/hub-runtime-config", saved); resp.Status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", resp.Status, resp.Body)
	}
	_, got = c.Get(t, "/api/settings/hub-runtime-config")
	s := got["saved"].(map[string]any)
	if s["hub_timezone"] != "Europe/Berlin" || s["public_base_url"] != "https://backup.example.com" ||
		s["log_rotation"] != "hourly" || s["run_retention_days"] != float64(90) || s["incomplete_cleanup_days"] != float64(0) {
		t.Fatalf("saved values not normalized as the flags are: %v", s)
	}
	ret := s["default_backup_retention"].(map[string]any)
	if ret["keep_last"] != float64(7) || ret["max_delete_per_tick"] != float64(50) {
		t.Fatalf("default retention without its defaults: %v", ret)
	}
	eff := got["effective"].(map[string]any)
	fields := got["fields"].(map[string]any)
	// Live: applies now. Restart-bound: the old value stays effective and the field is pending.
	if eff["run_retention_days"] != float64(90) || fields["run_retention_days"].(map[string]any)["source"] != "db" {
		t.Fatalf("run retention is live, effective %v %v", eff["run_retention_days"], fields["run_retention_days"])
	}
	if eff["hub_timezone"] != "UTC" || fields["hub_timezone"].(map[string]any)["pending_restart"] != true {
		t.Fatalf("timezone needs a restart: effective %v, %v", eff["hub_timezone"], fields["hub_timezone"])
	}
	if got["requires_restart"] != true {
		t.Fatalf("requires_restart with a pending timezone: %v", got["requires_restart"])
	}
	if eff["default_backup_retention"].(map[string]any)["keep_last"] != float64(7) {
		t.Fatalf("default retention effective: %v", eff["default_backup_retention"])
	}
	if fields["bind_host"].(map[string]any)["editable"] != false {
		t.Fatalf("bind host is never editable: %v", fields["bind_host"])
	}
}

func TestRuntimeConfigValidation(t *testing.T) {
	t.Parallel()
	h, _ := startRuntimeHub(t)
	c := h.Login(t)
	good := map[string]any{"run_retention_days": 30}
	if resp := c.Do(t, http.MethodPut, "/api/settings/hub-runtime-config", good); resp.Status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", resp.Status, resp.Body)
	}
	for _, tc := range []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"RunRetentionZero", map[string]any{"run_retention_days": 0}, "run_retention_days"},
		{"NegativeCleanup", map[string]any{"incomplete_cleanup_days": -1}, "incomplete_cleanup_days"},
		{"UnknownTimezone", map[string]any{"hub_timezone": "Mars/Olympus"}, "hub_timezone"},
		{"URLWithQuery", map[string]any{"public_base_url": "https://x.example/?a=1"}, "public_base_url"},
		{"NotAURL", map[string]any{"public_base_url": "ftp://x"}, "public_base_url"},
		{"BadRotation", map[string]any{"log_rotation": "weekly"}, "log_rotation"},
		{"BadLevel", map[string]any{"log_filter": "loud"}, "log_filter"},
		{"RetentionWithoutRule", map[string]any{"default_backup_retention": map[string]any{"enabled": true}}, "default_backup_retention.enabled"},
		{"RetentionOutOfRange", map[string]any{"default_backup_retention": map[string]any{"enabled": true, "keep_last": -3}}, "default_backup_retention.keep_last"},
		{"UnknownField", map[string]any{"bind_port": 80}, "bind_port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := c.Do(t, http.MethodPut, "/api/settings/hub-runtime-config", tc.body)
			body := resp.JSON(t)
			details, _ := body["details"].(map[string]any)
			if resp.Status != http.StatusBadRequest || details == nil || details["field"] != tc.field {
				t.Fatalf("want 400 on field %s, got %d %s", tc.field, resp.Status, resp.Body)
			}
		})
	}
	// Bodies the decoder refuses before validation: nothing is saved either.
	for _, tc := range []struct {
		name, body, code string
		status           int
	}{
		{"Malformed", `{"run_retention_days":`, "invalid_json", http.StatusBadRequest},
		{"NotAnObject", `[1,2]`, "invalid_json", http.StatusBadRequest},
		{"TrailingData", `{"run_retention_days":7}{}`, "invalid_json", http.StatusBadRequest},
		{"WrongType", `{"run_retention_days":"7"}`, "invalid_json", http.StatusBadRequest},
		{"IntOverflow", `{"run_retention_days":99999999999999999999999}`, "invalid_json", http.StatusBadRequest},
		{"Oversized", `{"public_base_url":"https://x.example/` + strings.Repeat("p", 3<<20) + `"}`, "payload_too_large", http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := c.Do(t, http.MethodPut, "/api/settings/hub-runtime-config", tc.body)
			if resp.Status != tc.status || resp.ErrorCode() != tc.code {
				t.Fatalf("want %d %s, got %s", tc.status, tc.code, resp)
			}
		})
	}
	t.Run("AllProblemsAtOnce", func(t *testing.T) {
		resp := c.Do(t, http.MethodPut, "/api/settings/hub-runtime-config",
			map[string]any{"run_retention_days": 0, "log_keep_files": 0, "hub_timezone": "Nowhere"})
		v, _ := resp.JSON(t)["details"].(map[string]any)["violations"].([]any)
		if resp.Status != http.StatusBadRequest || len(v) != 3 {
			t.Fatalf("want 3 violations, got %d %s", resp.Status, resp.Body)
		}
	})
	_, got := c.Get(t, "/api/settings/hub-runtime-config")
	if s := got["saved"].(map[string]any); len(s) != 1 || s["run_retention_days"] != float64(30) {
		t.Fatalf("a rejected PUT changed the saved config: %v", s)
	}
	if got["effective"].(map[string]any)["run_retention_days"] != float64(30) {
		t.Fatalf("a rejected PUT changed the live value: %v", got["effective"])
	}
}

func TestRuntimeConfigOverrideWins(t *testing.T) {
	t.Parallel()
	h, rc := startRuntimeHub(t)
	c := h.Login(t)
	if resp := c.Do(t, http.MethodPut, "/api/settings/hub-runtime-config",
		map[string]any{"audit_retention_days": 7, "log_filter": "debug"}); resp.Status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", resp.Status, resp.Body)
	}
	_, got := c.Get(t, "/api/settings/hub-runtime-config")
	eff, fields := got["effective"].(map[string]any), got["fields"].(map[string]any)
	audit := fields["audit_retention_days"].(map[string]any)
	if eff["audit_retention_days"] != float64(30) || audit["source"] != "env" || audit["overridden"] != true ||
		audit["editable"] != false || audit["env"] != "BASTION_AUDIT_RETENTION_DAYS" {
		t.Fatalf("the environment must win over the saved value: %v %v", eff["audit_retention_days"], audit)
	}
	if rc.Live.AuditRetentionDays() != 30 {
		t.Fatalf("live audit retention changed under an env override: %d", rc.Live.AuditRetentionDays())
	}
	logf := fields["log_filter"].(map[string]any)
	if eff["log_filter"] != "info" || logf["source"] != "cli" || logf["pending_restart"] != false {
		t.Fatalf("a flag wins and nothing waits for a restart: %v %v", eff["log_filter"], logf)
	}
	if got["saved"].(map[string]any)["log_filter"] != "debug" {
		t.Fatalf("the saved value is still shown: %v", got["saved"])
	}
}

// The hourly prune reads the retention saved through the API at its next pass, no restart.
func TestRuntimeConfigRunRetentionAppliesToPrune(t *testing.T) {
	t.Parallel()
	h, rc := startRuntimeHub(t)
	c := h.Login(t)
	ctx := context.Background()
	jobID := uuidN(1, 1)
	now := h.Clock.Now().Unix()
	if err := h.DB.Writer().InsertJob(ctx, storage.Job{ID: jobID, Name: "job", ScheduleTimezone: "UTC",
		OverlapPolicy: "queue", MissedRunPolicy: "skip", SpecJSON: `{}`, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	ended := now - 10*86400
	runID := uuidN(2, 1)
	if err := h.DB.Writer().InsertRun(ctx, storage.Run{ID: runID, JobID: jobID, Status: storage.RunFailed,
		StartedAt: ended - 5, EndedAt: &ended}); err != nil {
		t.Fatal(err)
	}
	p := &runs.Pruner{DB: h.DB, Clock: h.Clock, Log: zerolog.Nop(), RetentionDays: rc.Live.RunRetentionDays}
	if n, err := p.PruneOnce(ctx); err != nil || n != 0 {
		t.Fatalf("with 180 days a 10-day-old run stays: %d %v", n, err)
	}
	if resp := c.Do(t, http.MethodPut, "/api/settings/hub-runtime-config", map[string]any{"run_retention_days": 7}); resp.Status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", resp.Status, resp.Body)
	}
	h.Clock.Advance(time.Hour)
	if n, err := p.PruneOnce(ctx); err != nil || n != 1 {
		t.Fatalf("after saving 7 days the next pass prunes the run: %d %v", n, err)
	}
	// Clearing the saved value goes back to the default at once.
	if resp := c.Do(t, http.MethodPut, "/api/settings/hub-runtime-config", map[string]any{}); resp.Status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", resp.Status, resp.Body)
	}
	if rc.Live.RunRetentionDays() != 180 {
		t.Fatalf("cleared retention: %d, want the default 180", rc.Live.RunRetentionDays())
	}
}

func TestRuntimeConfigRoles(t *testing.T) {
	t.Parallel()
	h, _ := startRuntimeHub(t)
	admin := h.Login(t)
	viewer := h.AddUser(t, admin, "vera", "viewer")
	op := h.AddUser(t, admin, "otto", "operator")
	if resp := viewer.Do(t, http.MethodGet, "/api/settings/hub-runtime-config", nil); resp.Status != http.StatusOK {
		t.Fatalf("viewer GET: %d", resp.Status)
	}
	for _, cl := range []*apitest.Client{viewer, op} {
		if resp := cl.Do(t, http.MethodPut, "/api/settings/hub-runtime-config", map[string]any{"run_retention_days": 1}); resp.Status != http.StatusForbidden {
			t.Fatalf("non-admin PUT: %d %s", resp.Status, resp.Body)
		}
	}
}

// The default retention is stored complete, in the shape withDefaultRetention gives new jobs.
func TestRuntimeConfigDefaultRetentionStored(t *testing.T) {
	t.Parallel()
	h, _ := startRuntimeHub(t)
	c := h.Login(t)
	if resp := c.Do(t, http.MethodPut, "/api/settings/hub-runtime-config",
		map[string]any{"default_backup_retention": map[string]any{"enabled": true, "keep_days": 14}}); resp.Status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", resp.Status, resp.Body)
	}
	raw, err := h.DB.Reader().GetSetting(context.Background(), storage.SettingHubRuntimeConfig)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"default_backup_retention":{"enabled":true,"keep_last":null,"keep_days":14,"max_delete_per_tick":50,"max_delete_per_day":200}`; !strings.Contains(raw, want) {
		t.Fatalf("stored %s, want it to contain %s", raw, want)
	}
}

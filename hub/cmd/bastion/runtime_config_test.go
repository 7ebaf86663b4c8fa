package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/bastion-backup/bastion/storage"
)

// What the runtime config page saves is what the next start reads, with a flag or the environment
// still winning; log_filter is the original's key for the log level.
func TestLoadConfigReadsSavedRuntimeConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(dir, "bastion.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Writer().PutSetting(ctx, storage.SettingHubRuntimeConfig,
		`{"log_filter":"debug","run_retention_days":30,"audit_retention_days":9,"hub_timezone":"Europe/Berlin","default_backup_retention":{"enabled":true,"keep_last":3}}`, 1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	env := map[string]string{"BASTION_AUDIT_RETENTION_DAYS": "40"}
	cfg, err := loadConfig(ctx, []string{"--data-dir", dir, "--hub-timezone", "UTC"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log != "debug" || cfg.RunRetentionDays != 30 || cfg.AuditRetentionDays != 40 || cfg.HubTimezone != "UTC" {
		t.Fatalf("log %q run %d audit %d tz %q", cfg.Log, cfg.RunRetentionDays, cfg.AuditRetentionDays, cfg.HubTimezone)
	}
	rc := runtimeConfigFor(cfg)
	if f := rc.Fields["audit_retention_days"]; f.Source != "env" || f.Env != "BASTION_AUDIT_RETENTION_DAYS" || f.Default != 180 {
		t.Fatalf("audit field %+v", f)
	}
	if f := rc.Fields["log_filter"]; f.Source != "db" || f.Env != "BASTION_LOG / RUST_LOG" {
		t.Fatalf("log field %+v", f)
	}
	if rc.Live.RunRetentionDays() != 30 || rc.Live.AuditRetentionDays() != 40 {
		t.Fatalf("live %d %d", rc.Live.RunRetentionDays(), rc.Live.AuditRetentionDays())
	}
}

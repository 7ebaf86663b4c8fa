package storage

import (
	"context"
	"fmt"
)

// Setting keys used by the Hub.
const (
	SettingNotifications    = "notifications"
	SettingHubRuntimeConfig = "hub_runtime_config_v1"
)

// GetSetting returns the JSON stored under key, or ErrNotFound.
func (q Q) GetSetting(ctx context.Context, key string) (string, error) {
	var v string
	err := q.ex.QueryRowContext(ctx, "SELECT value_json FROM settings WHERE key = ?", key).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("get setting %s: %w", key, notFound(err))
	}
	return v, nil
}

// PutSetting stores valueJSON under key, replacing any previous value.
func (q Q) PutSetting(ctx context.Context, key, valueJSON string, now int64) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO settings(key, value_json, updated_at) VALUES (?, ?, ?)
		ON CONFLICT(key) DO UPDATE SET value_json = excluded.value_json, updated_at = excluded.updated_at`,
		key, valueJSON, now)
	if err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	return nil
}

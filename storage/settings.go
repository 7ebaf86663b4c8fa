package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
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

// ReadSettingFile reads one setting straight from the database file at path, read-only and
// without migrating: the Hub needs its saved runtime configuration (log settings among it) before
// it can log the migrations that Open would apply. A missing file, table or key is ErrNotFound.
func ReadSettingFile(ctx context.Context, path, key string) (string, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read setting %s: %w", key, ErrNotFound)
	}
	db, err := sql.Open("sqlite3", dsn(path, url.Values{"mode": {"ro"}, "_busy_timeout": {"5000"}}))
	if err != nil {
		return "", fmt.Errorf("open %s to read settings: %w", path, err)
	}
	defer db.Close()
	var v string
	err = db.QueryRowContext(ctx, "SELECT value_json FROM settings WHERE key = ?", key).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", fmt.Errorf("read setting %s: %w", key, ErrNotFound)
	case err != nil && strings.Contains(err.Error(), "no such table"):
		return "", fmt.Errorf("read setting %s: %w", key, ErrNotFound)
	case err != nil:
		return "", fmt.Errorf("read setting %s from %s: %w", key, path, err)
	}
	return v, nil
}

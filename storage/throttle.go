package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// LoginThrottle counts a client's failed logins. LockedUntil is 0 when the client is not locked.
type LoginThrottle struct {
	IP            string
	Failures      int64
	FirstFailedAt int64
	LastFailedAt  int64
	LockedUntil   int64
}

const qGetLoginThrottle = `SELECT ip, failures, first_failed_at, last_failed_at, locked_until FROM login_throttle WHERE ip = ?`

// GetLoginThrottle returns the throttle row of ip, or ErrNotFound.
func (q Q) GetLoginThrottle(ctx context.Context, ip string) (LoginThrottle, error) {
	var t LoginThrottle
	var locked sql.NullInt64
	err := q.ex.QueryRowContext(ctx, qGetLoginThrottle, ip).Scan(&t.IP, &t.Failures, &t.FirstFailedAt, &t.LastFailedAt, &locked)
	if err != nil {
		return LoginThrottle{}, fmt.Errorf("get login throttle: %w", notFound(err))
	}
	t.LockedUntil = locked.Int64
	return t, nil
}

// PutLoginThrottle inserts or replaces the throttle row of t.IP.
func (q Q) PutLoginThrottle(ctx context.Context, t LoginThrottle) error {
	var locked sql.NullInt64
	if t.LockedUntil != 0 {
		locked = sql.NullInt64{Int64: t.LockedUntil, Valid: true}
	}
	_, err := q.ex.ExecContext(ctx, `INSERT INTO login_throttle(ip, failures, first_failed_at, last_failed_at, locked_until)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(ip) DO UPDATE SET failures = excluded.failures, first_failed_at = excluded.first_failed_at,
			last_failed_at = excluded.last_failed_at, locked_until = excluded.locked_until`,
		t.IP, t.Failures, t.FirstFailedAt, t.LastFailedAt, locked)
	if err != nil {
		return fmt.Errorf("put login throttle: %w", err)
	}
	return nil
}

// DeleteLoginThrottle forgets the failures of ip; a missing row is not an error.
func (q Q) DeleteLoginThrottle(ctx context.Context, ip string) error {
	if _, err := q.ex.ExecContext(ctx, "DELETE FROM login_throttle WHERE ip = ?", ip); err != nil {
		return fmt.Errorf("delete login throttle: %w", err)
	}
	return nil
}

package storage

import (
	"context"
	"fmt"
)

// ThrottleIdleRetention is how long a login-throttle row stays after its last failure, once it
// is no longer locked.
const ThrottleIdleRetention int64 = 30 * 86400

// PruneStats counts the rows PruneExpired removed.
type PruneStats struct {
	Sessions, EnrollmentTokens, ThrottleRows int64
}

const (
	qPruneSessions = `DELETE FROM sessions WHERE expires_at <= ?`
	qPruneTokens   = `DELETE FROM enrollment_tokens WHERE expires_at <= ? OR remaining_uses <= 0`
	qPruneThrottle = `DELETE FROM login_throttle WHERE last_failed_at < ? AND (locked_until IS NULL OR locked_until <= ?)`
)

// PruneExpired deletes expired sessions, expired or used-up enrollment tokens, and login-throttle
// rows idle for ThrottleIdleRetention that no longer lock anyone.
func (q Q) PruneExpired(ctx context.Context, now int64) (PruneStats, error) {
	var st PruneStats
	for _, step := range []struct {
		what  string
		query string
		args  []any
		n     *int64
	}{
		{"sessions", qPruneSessions, []any{now}, &st.Sessions},
		{"enrollment tokens", qPruneTokens, []any{now}, &st.EnrollmentTokens},
		{"login throttle", qPruneThrottle, []any{now - ThrottleIdleRetention, now}, &st.ThrottleRows},
	} {
		res, err := q.ex.ExecContext(ctx, step.query, step.args...)
		if err != nil {
			return st, fmt.Errorf("prune %s: %w", step.what, err)
		}
		if *step.n, err = res.RowsAffected(); err != nil {
			return st, fmt.Errorf("prune %s: %w", step.what, err)
		}
	}
	return st, nil
}

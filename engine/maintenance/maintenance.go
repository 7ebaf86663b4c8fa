// Package maintenance prunes what expires in the Hub database: sessions, enrollment tokens,
// stale login-throttle rows, and audit log rows past their retention. It runs hourly; nothing
// here is urgent, since expired rows are already ignored by every query that reads them.
package maintenance

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/internal/periodic"
	"github.com/bastion-backup/bastion/storage"
)

// Interval between passes.
const Interval = time.Hour

// auditBatch bounds one audit delete, so a first pass over a large log never holds the writer for
// long.
const auditBatch = 500

// Loop prunes the database once at start and then every Interval until ctx ends.
type Loop struct {
	DB    *storage.DB
	Clock clock.Clock
	Log   zerolog.Logger
	// AuditRetentionDays is how long audit log rows are kept; nil, 0 or less keeps them forever. It
	// is asked at every pass, so a retention saved in the runtime settings takes effect at the
	// next pass without a restart.
	AuditRetentionDays func() int
	// passed, when set, receives after each pass (tests).
	passed chan<- Stats
}

// Stats counts what one pass removed.
type Stats struct {
	storage.PruneStats
	AuditRows int64
}

// Run is the loop; it returns nil when ctx ends. Failures are logged and retried next pass.
func (l *Loop) Run(ctx context.Context) error {
	log := l.Log.With().Str("component", "maintenance").Logger()
	return periodic.Run(ctx, l.Clock, 0, Interval, func(ctx context.Context) {
		st, err := l.PruneOnce(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn().Err(err).Msg("database maintenance failed; retrying next pass")
		case st != (Stats{}):
			log.Info().Int64("sessions", st.Sessions).Int64("enrollment_tokens", st.EnrollmentTokens).
				Int64("throttle_rows", st.ThrottleRows).Int64("audit_rows", st.AuditRows).Msg("pruned expired rows")
		}
		if l.passed != nil {
			l.passed <- st
		}
	})
}

// PruneOnce is one pass: expired rows, then audit rows older than AuditRetentionDays, in batches.
func (l *Loop) PruneOnce(ctx context.Context) (Stats, error) {
	now := l.Clock.Now().Unix()
	var st Stats
	var err error
	if st.PruneStats, err = l.DB.Writer().PruneExpired(ctx, now); err != nil {
		return st, err
	}
	if l.AuditRetentionDays == nil {
		return st, nil
	}
	days := l.AuditRetentionDays()
	if days <= 0 {
		return st, nil
	}
	before := now - int64(days)*86400
	for {
		n, err := l.DB.Writer().PruneAudit(ctx, before, auditBatch)
		st.AuditRows += n
		if err != nil || n < auditBatch {
			return st, err
		}
	}
}

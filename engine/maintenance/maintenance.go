// Package maintenance prunes what expires in the Hub database: sessions, enrollment tokens and
// stale login-throttle rows. It runs hourly; nothing here is urgent, since expired rows are already
// ignored by every query that reads them.
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

// Loop prunes the database once at start and then every Interval until ctx ends.
type Loop struct {
	DB    *storage.DB
	Clock clock.Clock
	Log   zerolog.Logger
	// passed, when set, receives after each pass (tests).
	passed chan<- storage.PruneStats
}

// Run is the loop; it returns nil when ctx ends. Failures are logged and retried next pass.
func (l *Loop) Run(ctx context.Context) error {
	log := l.Log.With().Str("component", "maintenance").Logger()
	return periodic.Run(ctx, l.Clock, 0, Interval, func(ctx context.Context) {
		st, err := l.DB.Writer().PruneExpired(ctx, l.Clock.Now().Unix())
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn().Err(err).Msg("database maintenance failed; retrying next pass")
		case st != (storage.PruneStats{}):
			log.Info().Int64("sessions", st.Sessions).Int64("enrollment_tokens", st.EnrollmentTokens).
				Int64("throttle_rows", st.ThrottleRows).Msg("pruned expired rows")
		}
		if l.passed != nil {
			l.passed <- st
		}
	})
}

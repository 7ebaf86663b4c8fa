package runs

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/internal/periodic"
	"github.com/bastion-backup/bastion/storage"
)

// PruneInterval is the time between two run-history pruning passes.
const PruneInterval = time.Hour

// pruneBatch bounds one delete statement, so a first pass over years of history never holds the
// writer for long.
const pruneBatch = 500

// Pruner deletes run history older than RetentionDays (runs, with their events and
// notifications), sparing runs whose snapshot is present, being deleted or in error. It runs at
// start and then hourly.
type Pruner struct {
	DB    *storage.DB
	Clock clock.Clock
	Log   zerolog.Logger
	// RetentionDays is asked at every pass, so a retention saved in the runtime settings takes
	// effect at the next pass without a restart. nil, 0 or less keeps runs forever.
	RetentionDays func() int
	// passed, when set, receives the count of each pass (tests).
	passed chan<- int64
}

// Run is the loop; it returns nil when ctx ends. A failed pass is logged and retried next pass.
func (p *Pruner) Run(ctx context.Context) error {
	log := p.Log.With().Str("component", "run-pruning").Logger()
	return periodic.Run(ctx, p.Clock, 0, PruneInterval, func(ctx context.Context) {
		n, err := p.PruneOnce(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn().Err(err).Msg("prune run history failed; retrying next pass")
		case n > 0:
			log.Info().Int64("runs", n).Int("retention_days", p.RetentionDays()).Msg("pruned old runs")
		}
		if p.passed != nil {
			p.passed <- n
		}
	})
}

// PruneOnce deletes, in batches, the runs that ended before now − RetentionDays.
func (p *Pruner) PruneOnce(ctx context.Context) (int64, error) {
	if p.RetentionDays == nil {
		return 0, nil
	}
	days := p.RetentionDays()
	if days <= 0 {
		return 0, nil
	}
	before := p.Clock.Now().Unix() - int64(days)*86400
	var total int64
	for {
		n, err := p.DB.Writer().PruneRuns(ctx, before, pruneBatch)
		total += n
		if err != nil || n < pruneBatch {
			return total, err
		}
	}
}

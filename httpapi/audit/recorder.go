package audit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/storage"
)

// Bounds of the Recorder.
const (
	// MaxPending is how many entries may wait for the database; beyond it new entries are dropped
	// (and the drop logged), so a flood of requests costs bounded memory and never waits.
	MaxPending = 2048
	// batchSize entries are written per transaction.
	batchSize = 200
	// writeTimeout bounds one batch's wait for the writer connection and its insert.
	writeTimeout = 30 * time.Second
)

// Recorder writes audit entries in the background. Record never blocks and never fails: entries
// queue in memory (at most MaxPending), and one goroutine, started when the queue gets its first
// entry and gone once it is empty, inserts them in batches through the storage writer. A failed
// write is logged and its entries are lost; so are entries still queued if the process dies.
type Recorder struct {
	db  *storage.DB
	log zerolog.Logger

	mu      sync.Mutex
	queue   []storage.AuditEntry
	running bool
	idle    chan struct{} // closed when the running drain ends
	dropped int
}

// NewRecorder returns a Recorder writing to db.
func NewRecorder(db *storage.DB, log zerolog.Logger) *Recorder {
	return &Recorder{db: db, log: log.With().Str("component", "audit").Logger()}
}

// Record queues e for writing.
func (rc *Recorder) Record(e storage.AuditEntry) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.queue) >= MaxPending {
		rc.dropped++
		return
	}
	rc.queue = append(rc.queue, e)
	if !rc.running {
		rc.running, rc.idle = true, make(chan struct{})
		go rc.drain()
	}
}

func (rc *Recorder) drain() {
	for {
		rc.mu.Lock()
		n := min(len(rc.queue), batchSize)
		if n == 0 {
			dropped := rc.dropped
			rc.dropped = 0
			if dropped == 0 {
				rc.running = false
				close(rc.idle)
				rc.mu.Unlock()
				return
			}
			rc.mu.Unlock()
			// Before going idle, so that Flush returns only after the warning is out.
			rc.log.Warn().Int("dropped", dropped).Int("max_pending", MaxPending).
				Msg("audit entries dropped: more were waiting for the database than the queue holds")
			continue
		}
		batch := rc.queue[:n:n]
		rc.queue = rc.queue[n:]
		if len(rc.queue) == 0 {
			rc.queue = nil // let the backing array go
		}
		rc.mu.Unlock()
		if err := rc.write(batch); err != nil {
			rc.log.Warn().Err(err).Int("entries", len(batch)).Msg("audit entries lost: write failed")
		}
	}
}

func (rc *Recorder) write(batch []storage.AuditEntry) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	err := rc.db.Write(ctx, func(q storage.Q) error { return q.InsertAudit(ctx, batch) })
	if err != nil {
		return fmt.Errorf("write %d audit entries: %w", len(batch), err)
	}
	return nil
}

// Flush waits until every entry recorded before it was called has been written (or its write
// failed), or ctx ends. The Hub calls it after draining HTTP requests at shutdown; GET
// /api/audit calls it so that a page shows the requests made just before it.
func (rc *Recorder) Flush(ctx context.Context) error {
	for {
		rc.mu.Lock()
		running, idle := rc.running, rc.idle
		rc.mu.Unlock()
		if !running {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("flush audit log: %w", ctx.Err())
		}
	}
}

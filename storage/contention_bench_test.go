package storage_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/storage"
)

// BenchmarkContention runs the Hub's write shape — read a run, update its progress, append an
// event, all in one transaction — from 64 writer goroutines while 16 readers list runs and
// events. impl=default is the driver's default configuration, impl=busy5s adds only a busy
// timeout, impl=tuned is storage.Open. Each reports lock_errors (transactions lost to "database
// is locked", readers included) and committed_writes/s; read the ratio with benchstat -col /impl.
func BenchmarkContention(b *testing.B) {
	const writers, readers = 64, 16
	for _, impl := range []string{"default", "busy5s", "tuned"} {
		b.Run("impl="+impl, func(b *testing.B) {
			ctx := context.Background()
			path := filepath.Join(b.TempDir(), "bench.db")
			db, err := storage.Open(ctx, path, storage.Options{Logger: zerolog.Nop()})
			if err != nil {
				b.Fatal(err)
			}
			seedJobAndRuns(b, db, "job", runIDs(writers)...)

			var write, read func(ctx context.Context, fn func(q txLike) error) error
			switch impl {
			case "tuned":
				write = func(ctx context.Context, fn func(q txLike) error) error {
					return db.Write(ctx, func(q storage.Q) error { return fn(q) })
				}
				read = func(ctx context.Context, fn func(q txLike) error) error {
					return db.Read(ctx, func(q storage.Q) error { return fn(q) })
				}
				defer db.Close()
			default:
				db.Close()
				dsn := "file:" + path
				if impl == "busy5s" {
					dsn += "?_busy_timeout=5000"
				}
				raw, err := sql.Open("sqlite3", dsn)
				if err != nil {
					b.Fatal(err)
				}
				defer raw.Close()
				write = rawTx(raw)
				read = rawTx(raw)
			}

			var lockErrs, otherErrs, done, committed atomic.Int64
			total := int64(b.N)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					runID := fmt.Sprintf("run%03d", w)
					for done.Add(1) <= total {
						err := write(ctx, func(q txLike) error {
							var status string
							if err := q.QueryRow(ctx, "SELECT status FROM runs WHERE id = ?", runID).Scan(&status); err != nil {
								return err
							}
							if _, err := q.Exec(ctx, "UPDATE runs SET progress_json = ? WHERE id = ?", `{"v":1}`, runID); err != nil {
								return err
							}
							_, err := q.Exec(ctx, `INSERT INTO run_events(run_id, seq, ts, level, kind, message)
								SELECT ?, COALESCE(MAX(seq),0)+1, 1, 'info', 'progress', 'x' FROM run_events WHERE run_id = ?`, runID, runID)
							return err
						})
						if err == nil {
							committed.Add(1)
						}
						countErr(err, &lockErrs, &otherErrs)
					}
				}()
			}
			stop := make(chan struct{})
			var rg sync.WaitGroup
			for range readers {
				rg.Add(1)
				go func() {
					defer rg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						err := read(ctx, func(q txLike) error {
							rows, err := q.Query(ctx, "SELECT id, status FROM runs WHERE job_id = ? ORDER BY started_at DESC LIMIT 20", "job")
							if err != nil {
								return err
							}
							for rows.Next() {
							}
							rows.Close()
							var n int
							return q.QueryRow(ctx, "SELECT COUNT(*) FROM run_events WHERE run_id = ?", "run000").Scan(&n)
						})
						countErr(err, &lockErrs, &otherErrs)
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			close(stop)
			rg.Wait()
			b.ReportMetric(float64(lockErrs.Load()), "lock_errors")
			b.ReportMetric(float64(otherErrs.Load()), "other_errors")
			// Failed transactions return fast, so only committed writes count as throughput.
			b.ReportMetric(float64(committed.Load())/elapsed.Seconds(), "committed_writes/s")
		})
	}
}

type txLike interface {
	Exec(ctx context.Context, query string, args ...any) (sql.Result, error)
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) *sql.Row
}

type rawQ struct{ tx *sql.Tx }

func (r rawQ) Exec(ctx context.Context, q string, a ...any) (sql.Result, error) {
	return r.tx.ExecContext(ctx, q, a...)
}
func (r rawQ) Query(ctx context.Context, q string, a ...any) (*sql.Rows, error) {
	return r.tx.QueryContext(ctx, q, a...)
}
func (r rawQ) QueryRow(ctx context.Context, q string, a ...any) *sql.Row {
	return r.tx.QueryRowContext(ctx, q, a...)
}

func rawTx(db *sql.DB) func(ctx context.Context, fn func(q txLike) error) error {
	return func(ctx context.Context, fn func(q txLike) error) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(rawQ{tx}); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}
}

func countErr(err error, lock, other *atomic.Int64) {
	switch {
	case err == nil:
	case storage.IsLocked(err):
		lock.Add(1)
	default:
		other.Add(1)
	}
}

func runIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("run%03d", i)
	}
	return ids
}

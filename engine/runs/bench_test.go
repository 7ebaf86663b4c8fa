package runs

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// BenchmarkEventAppend: 100 runs append events at once, each waiting for its previous event to
// be durable (as an executor or an agent connection does). impl=percommit gives every event its
// own transaction; impl=group sends them through the service's group-committing writer.
// Figure: events/s (the ratio between the two).
func BenchmarkEventAppend(b *testing.B) {
	const runsN = 100
	for _, impl := range []string{"percommit", "group"} {
		b.Run("impl="+impl, func(b *testing.B) {
			db := storagetest.Open(b)
			ctx := context.Background()
			svc := New(Config{DB: db, Clock: clock.Real{}, Log: zerolog.Nop()})
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- svc.Run(runCtx) }()
			defer func() { cancel(); <-done }()
			ids := make([]string, runsN)
			err := db.Write(ctx, func(q storage.Q) error {
				for i := range ids {
					j := storage.Job{ID: fmt.Sprint("job", i), Name: "j", ScheduleTimezone: "UTC", OverlapPolicy: OverlapQueue,
						MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1}
					if err := q.InsertJob(ctx, j); err != nil {
						return err
					}
					ids[i] = NewID()
					if err := q.InsertRun(ctx, storage.Run{ID: ids[i], JobID: j.ID, Status: storage.RunRunning, StartedAt: 1}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			per := b.N/runsN + 1
			ev := Event{Kind: "upload", Message: "part uploaded", Fields: map[string]int{"part": 1, "bytes": 268435456}}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for _, id := range ids {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range per {
						var err error
						if impl == "group" {
							err = svc.AppendEvents(ctx, id, ev)
						} else {
							err = db.Write(ctx, func(q storage.Q) error {
								rows, err := svc.toRows(id, []Event{ev})
								if err != nil {
									return err
								}
								return q.AppendRunEvents(ctx, rows)
							})
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(per*runsN)/time.Since(start).Seconds(), "events/s")
		})
	}
}

package schedule

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/adhocore/gronx"
	"github.com/robfig/cron/v3"
)

// BenchmarkNext: the cost of one next-trigger computation in America/New_York from instants
// spread over a year (DST changes included). impl=gronx is the baseline the spec names,
// gronx.NextTickAfter on the expression string each call; impl=robfig is robfig/cron/v3's
// pre-parsed schedule; impl=compiled is Schedule.Next.
func BenchmarkNext(b *testing.B) {
	ny := mustLoad(b, "America/New_York")
	r := rand.New(rand.NewPCG(1, 2))
	var instants [1024]time.Time
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, ny)
	for i := range instants {
		instants[i] = start.Add(time.Duration(r.Int64N(365*86400)) * time.Second)
	}
	for _, c := range []struct{ name, expr string }{
		{"every5min", "*/5 * * * *"},
		{"daily0300", "0 3 * * *"},
		{"feb29", "0 0 29 2 *"},
		{"sunday0230", "30 2 * * 0"},
	} {
		b.Run("expr="+c.name, func(b *testing.B) {
			b.Run("impl=gronx", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, err := gronx.NextTickAfter(c.expr, instants[i%len(instants)], false); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run("impl=robfig", func(b *testing.B) {
				sched, err := cron.ParseStandard(c.expr)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if sched.Next(instants[i%len(instants)]).IsZero() {
						b.Fatal("robfig found no trigger")
					}
					i++
				}
			})
			b.Run("impl=compiled", func(b *testing.B) {
				s, err := Parse(c.expr, ny)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if s.Next(instants[i%len(instants)]).IsZero() {
						b.Fatal("no trigger")
					}
					i++
				}
			})
		})
	}
}

package schedule

import (
	"errors"
	"testing"
	"time"

	"github.com/adhocore/gronx"
)

// FuzzParse: Parse never panics; whatever it accepts gronx accepts too, prints back to an
// equivalent expression, and yields triggers strictly after the instant that match the fields
// (in UTC) or sit on a zone transition (a spring-gap trigger in New York).
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"*/5 * * * *", "0 */5 * * * *", "10 * * * * *", "0 0 31 4 *", "0 0 29 2 *", "30 2 * * 0",
		"0 9 * * mon-fri", "@daily", "@every 5m", "0 0 * * 7", "5/15 1-3 1,15 */2 6-7/2",
		"0 0 L * *", "*,5 * * * *", "0 0 31 4 1", "", "* * * *", "59 23 31 12 *",
	} {
		f.Add(seed)
	}
	ny, err := LoadLocation("America/New_York")
	if err != nil {
		f.Fatal(err)
	}
	instants := []time.Time{
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 28, 23, 59, 30, 5, time.UTC),
		time.Date(2026, 3, 8, 6, 59, 0, 0, time.UTC),  // just before New York springs forward
		time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC), // 01:30 EDT, the first pass of the overlap
		time.Date(2026, 11, 1, 6, 30, 0, 0, time.UTC), // 01:30 EST, the second pass
	}
	f.Fuzz(func(t *testing.T, expr string) {
		s, err := Parse(expr, time.UTC)
		if err != nil {
			if !errors.Is(err, ErrInvalidSchedule) {
				t.Fatalf("Parse(%q): %v does not match ErrInvalidSchedule", expr, err)
			}
			return
		}
		if !gronx.IsValid(expr) {
			t.Fatalf("Parse accepted %q, gronx rejects it", expr)
		}
		again, err := Parse(s.String(), time.UTC)
		if err != nil || again.String() != s.String() {
			t.Fatalf("Parse(%q).String() = %q does not parse back: %v", expr, s, err)
		}
		g := gronx.New()
		sNY, err := Parse(expr, ny)
		if err != nil {
			t.Fatalf("Parse(%q) succeeds in UTC, fails in New York: %v", expr, err)
		}
		for _, at := range instants {
			next := s.Next(at)
			if !next.After(at) || next.Second() != 0 || next.Nanosecond() != 0 {
				t.Fatalf("%q: Next(%s) = %s", expr, at, next)
			}
			if due, err := g.IsDue(s.String(), next); err != nil || !due {
				t.Fatalf("%q: Next(%s) = %s does not match the fields (%v)", expr, at, next, err)
			}
			if prev, err := gronx.PrevTickBefore(s.String(), next, false); err == nil && prev.After(at) {
				t.Fatalf("%q: Next(%s) = %s skips %s", expr, at, next, prev)
			}
			nextNY := sNY.Next(at)
			if !nextNY.After(at) {
				t.Fatalf("%q in New York: Next(%s) = %s", expr, at, nextNY)
			}
			if start, _ := nextNY.ZoneBounds(); !start.Equal(nextNY) {
				if due, err := g.IsDue(s.String(), nextNY); err != nil || !due {
					t.Fatalf("%q in New York: Next(%s) = %s does not match the fields", expr, at, nextNY)
				}
			}
		}
	})
}

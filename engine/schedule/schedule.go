// Package schedule compiles cron expressions for one IANA time zone and computes their trigger
// instants directly from the compiled fields, never by polling.
//
// Daylight saving follows ISC cron (docs/schedules.md): a job whose hour field starts with '*'
// follows elapsed time and fires at every real instant whose wall clock matches; every other job
// follows the wall clock, so a trigger lost in a spring gap fires once at the first instant after
// the gap and a trigger that happens twice in an autumn overlap fires once, at its first
// occurrence.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/adhocore/gronx"
)

var (
	// ErrInvalidSchedule marks an expression that cannot be used as a schedule.
	ErrInvalidSchedule = errors.New("invalid schedule")
	// ErrNeverFires marks a well-formed expression that names no existing day (31 April); it
	// also matches ErrInvalidSchedule.
	ErrNeverFires = fmt.Errorf("%w: it can never fire", ErrInvalidSchedule)
	// ErrInvalidTimezone marks a time zone that is not an explicit IANA name.
	ErrInvalidTimezone = errors.New("invalid timezone")
)

// Schedule is a compiled cron expression bound to a time zone. It is immutable and safe for
// concurrent use.
type Schedule struct {
	expr string
	loc  *time.Location

	minutes uint64 // bit m: minute m
	hours   uint32 // bit h: hour h
	doms    uint32 // bit d: day of month d (1..31)
	months  uint16 // bit m: month m (1..12)
	dows    uint8  // bit d: weekday d (0 = Sunday)

	// dayAnd is Vixie cron's rule: when either day field starts with '*', a day must match both
	// fields; when both are restricted, a day matching either one fires.
	dayAnd bool
	// elapsed: the hour field starts with '*', so the job follows elapsed time across DST changes.
	elapsed bool
	// dowDays[w] has bit d set when, in a month whose first day is weekday w, day d falls on an
	// allowed weekday; it turns the day-of-week field into a day-of-month mask per month.
	dowDays [7]uint32
}

// macros are the @-forms gronx accepts that mean a fixed 5-field expression ("@everysecond" is
// sub-minute and gronx has no "@midnight", so both stay rejected).
var macros = map[string]string{
	"@yearly":    "0 0 1 1 *",
	"@annually":  "0 0 1 1 *",
	"@monthly":   "0 0 1 * *",
	"@weekly":    "0 0 * * 0",
	"@daily":     "0 0 * * *",
	"@hourly":    "0 * * * *",
	"@always":    "* * * * *",
	"@5minutes":  "*/5 * * * *",
	"@10minutes": "*/10 * * * *",
	"@15minutes": "*/15 * * * *",
	"@30minutes": "0,30 * * * *",
}

// Parse validates expr and compiles it for loc. It accepts five fields (minute hour
// day-of-month month day-of-week), six fields whose first (seconds) field is exactly "0", and the
// @-macros listed in docs/schedules.md. Errors match ErrInvalidSchedule (ErrNeverFires for an
// expression that names no existing day) or ErrInvalidTimezone for a nil loc.
func Parse(expr string, loc *time.Location) (*Schedule, error) {
	if loc == nil {
		return nil, fmt.Errorf("parse schedule %q: %w: no time zone given", expr, ErrInvalidTimezone)
	}
	fields, err := splitFields(expr)
	if err != nil {
		return nil, fmt.Errorf("parse schedule %q: %w", expr, err)
	}
	s := &Schedule{expr: strings.Join(fields, " "), loc: loc}
	if err := s.compile(fields); err != nil {
		return nil, fmt.Errorf("parse schedule %q: %w", expr, err)
	}
	// Our parser is stricter than gronx (no L/W/#, no names outside their field, no '*' inside
	// a list); asking gronx as well guarantees we never accept what it rejects.
	g := gronx.New()
	if !g.IsValid(expr) || !g.IsValid(s.expr) {
		return nil, fmt.Errorf("parse schedule %q: %w: rejected by the cron validator", expr, ErrInvalidSchedule)
	}
	if !s.canFire() {
		return nil, fmt.Errorf("parse schedule %q: %w: no allowed month has an allowed day of month", expr, ErrNeverFires)
	}
	return s, nil
}

// String returns the normalized five-field expression: seconds dropped, macros expanded,
// names upper-cased, single spaces. Parsing it again gives the same schedule.
func (s *Schedule) String() string { return s.expr }

// Location returns the time zone the schedule is evaluated in.
func (s *Schedule) Location() *time.Location { return s.loc }

// Preview returns the next n trigger instants strictly after after, as the scheduler would fire
// them. It costs n Next calls; callers taking n from a request must bound it.
func (s *Schedule) Preview(after time.Time, n int) []time.Time {
	if n <= 0 {
		return nil
	}
	out := make([]time.Time, 0, min(n, 1024))
	t := after
	for range n {
		t = s.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

// LoadLocation resolves an IANA zone name. "" and "Local" are rejected: a schedule must name its
// zone explicitly so that it means the same on every machine.
func LoadLocation(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("load time zone %q: %w: an explicit IANA zone name is required", name, ErrInvalidTimezone)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("load time zone %q: %w: %w", name, ErrInvalidTimezone, err)
	}
	return loc, nil
}

// canFire reports whether some day can ever match. With the OR rule the weekday field alone
// fires every week. With the AND rule a day must exist in an allowed month: every existing
// (month, day) pair, 29 February included, falls on each weekday within the 400-year Gregorian
// cycle (TestEveryDateHitsEveryWeekday), so the weekday field cannot make it impossible.
func (s *Schedule) canFire() bool {
	if !s.dayAnd {
		return true
	}
	for m := 1; m <= 12; m++ {
		if s.months&(1<<m) != 0 && s.doms&daysUpTo(maxDaysIn[m]) != 0 {
			return true
		}
	}
	return false
}

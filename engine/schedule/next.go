package schedule

import (
	"math"
	"math/bits"
	"time"
)

// Wall times are "local seconds": seconds since 1970-01-01 00:00 of the local wall clock, as if
// that clock were UTC. An instant u has wall time u+offset(u).
//
// A zone is a sequence of periods [start, end) of constant offset (time.Time.ZoneBounds). Next
// works period by period and, inside one, in wall time with the compiled bitsets; it never steps
// minute by minute.
//
// The wall-clock rule is one definition: wall time w fires at the first instant at which the
// wall clock has reached w, F(w) = min{u : wall(u) >= w}. For a time that exists this is its
// first occurrence; for a time lost in a gap it is the first instant after the gap, shared by
// every time lost in that gap. F never decreases as w grows, so the next trigger after t is
// F(w*) for the smallest matching w* that the clock has not reached by t.

const (
	// maxOffset bounds the UTC offset of every IANA zone, LMT included (Asia/Manila: -15:56).
	maxOffset = 16 * 3600
	// maxPeriods caps the periods one Next call walks. A schedule that can fire does so within
	// a 400-year cycle; two DST periods a year keep that far below the cap.
	maxPeriods = 4096
	// maxMonths caps the months nextWall scans: the 400-year Gregorian cycle and a year spare.
	maxMonths = 401 * 12

	secondsPerDay = 86400
)

// period is one stretch of constant UTC offset: instants [start, end), offset seconds east.
type period struct{ start, end, off int64 }

func (s *Schedule) periodOf(t time.Time) period {
	_, off := t.Zone()
	st, en := t.ZoneBounds()
	p := period{start: math.MinInt64, end: math.MaxInt64, off: int64(off)}
	if !st.IsZero() {
		p.start = st.Unix()
	}
	if !en.IsZero() {
		p.end = en.Unix()
	}
	if sec := t.Unix(); p.end <= sec {
		// golang/go#81583: past a zone's last explicit transition Go computes periods from the
		// TZ rule and ends a leap year's last period a day early, before t itself. That period
		// really runs to the end of the UTC year.
		p.end = time.Date(t.UTC().Year()+1, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	}
	return p
}

func (s *Schedule) periodAt(sec int64) period { return s.periodOf(time.Unix(sec, 0).In(s.loc)) }

// after returns the period that follows p. Its start is clamped to p's end: with the leap-year
// repair above, the period found at p's end can claim to start earlier.
func (s *Schedule) after(p period) period {
	q := s.periodAt(p.end)
	q.start = max(q.start, p.end)
	return q
}

// before reports whether the instant at which wall time w occurs under p's offset lies
// before p's end.
func (p period) before(w int64) bool { return p.end == math.MaxInt64 || w-p.off < p.end }

// Next returns the first trigger instant strictly after after, in the schedule's zone. It
// returns the zero Time only if no trigger exists, which Parse rules out.
func (s *Schedule) Next(after time.Time) time.Time {
	t := after.In(s.loc)
	sec := t.Unix()
	p := s.periodOf(t)
	// The first whole wall minute strictly after the wall clock reading at after.
	lower := floorDiv(sec+p.off, 60)*60 + 60
	var u int64
	var ok bool
	if s.elapsed {
		u, ok = s.nextElapsed(p, lower)
	} else {
		u, ok = s.nextWallClock(sec, p, lower)
	}
	if !ok {
		return time.Time{}
	}
	return time.Unix(u, 0).In(s.loc)
}

// nextElapsed fires at every real instant whose wall time matches: each period contributes the
// matching wall times it covers, so gap times are skipped and overlap times fire twice.
func (s *Schedule) nextElapsed(p period, lower int64) (int64, bool) {
	// nextWall(from) == w, so it also answers for any lower bound in [from, w].
	from, w := int64(math.MaxInt64), int64(0)
	for range maxPeriods {
		if lower < from || lower > w {
			var ok bool
			if w, ok = s.nextWall(lower); !ok {
				return 0, false
			}
			from = lower
		}
		if p.before(w) {
			return w - p.off, true
		}
		p = s.after(p)
		lower = ceilDiv(p.start+p.off, 60) * 60
	}
	return 0, false
}

// nextWallClock fires each matching wall time once, at F(w) (see the top of this file).
func (s *Schedule) nextWallClock(sec int64, p period, lower int64) (int64, bool) {
	// Wall times below the highest one reached before this period began are done, even if the
	// clock is now repeating them (autumn overlap). Only a period that began within
	// 2*maxOffset can have reached past the current wall clock.
	if p.start != math.MinInt64 && sec-p.start < 2*maxOffset {
		if r := ceilDiv(s.reachedBefore(p.start), 60) * 60; r > lower {
			lower = r
		}
	}
	w, ok := s.nextWall(lower)
	if !ok {
		return 0, false
	}
	for range maxPeriods {
		if p.before(w) {
			// Inside p the wall clock reaches w at w-off, or at p's start if w fell in the gap
			// before p.
			return max(p.start, w-p.off), true
		}
		p = s.after(p)
	}
	return 0, false
}

// reachedBefore returns the supremum of the wall clock over all instants before start: the
// highest end-of-period wall time among the periods that precede it. Periods that ended more
// than 2*maxOffset before start cannot hold the maximum.
func (s *Schedule) reachedBefore(start int64) int64 {
	high := int64(math.MinInt64)
	at := start
	for range 16 {
		q := s.periodAt(at - 1)
		high = max(high, at+q.off)
		if q.start == math.MinInt64 || q.start <= start-2*maxOffset {
			break
		}
		at = q.start
	}
	return high
}

// nextWall returns the smallest wall time >= w (w whole minutes) whose fields match, jumping
// month, day, hour and minute with the bitsets. ok is false only if nothing matches within
// the 400-year Gregorian cycle, which canFire rules out.
func (s *Schedule) nextWall(w int64) (int64, bool) {
	day := floorDiv(w, secondsPerDay)
	sod := int(w - day*secondsPerDay)
	y, mo, d := civilFromDays(day)
	h, mi := sod/3600, sod%3600/60
	for range maxMonths {
		if s.months&(1<<mo) == 0 {
			if rest := s.months >> (mo + 1); rest != 0 {
				mo += 1 + bits.TrailingZeros16(rest)
			} else {
				y++
				mo = bits.TrailingZeros16(s.months)
			}
			d, h, mi = 1, 0, 0
		}
		first := daysFromCivil(y, mo, 1)
		days := s.dayMask(int(floorMod(first+4, 7)), daysIn(y, mo)) &^ (1<<d - 1)
		for days != 0 {
			nd := bits.TrailingZeros32(days)
			if nd != d {
				d, h, mi = nd, 0, 0
			}
			if nh, nm, ok := s.timeOfDay(h, mi); ok {
				return (first+int64(d-1))*secondsPerDay + int64(nh*3600+nm*60), true
			}
			days &= days - 1
		}
		mo++
		if mo > 12 {
			y, mo = y+1, 1
		}
		d, h, mi = 1, 0, 0
	}
	return 0, false
}

// dayMask returns the matching days (bit d = day d) of a month of dim days whose first day is
// weekday firstDow.
func (s *Schedule) dayMask(firstDow, dim int) uint32 {
	dows := s.dowDays[firstDow]
	var m uint32
	if s.dayAnd {
		m = s.doms & dows
	} else {
		m = s.doms | dows
	}
	return m & daysUpTo(dim)
}

// timeOfDay returns the first matching hour:minute at or after h:mi on a matching day.
func (s *Schedule) timeOfDay(h, mi int) (int, int, bool) {
	if s.hours&(1<<h) != 0 {
		if rest := s.minutes >> mi; rest != 0 {
			return h, mi + bits.TrailingZeros64(rest), true
		}
	}
	if rest := s.hours >> (h + 1); rest != 0 {
		return h + 1 + bits.TrailingZeros32(rest), bits.TrailingZeros64(s.minutes), true
	}
	return 0, 0, false
}

// Calendar arithmetic on day numbers (days since 1970-01-01, proleptic Gregorian), after Howard
// Hinnant's "chrono-Compatible Low-Level Date Algorithms".

var maxDaysIn = [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

// daysUpTo returns bits 1..n set.
func daysUpTo(n int) uint32 { return (1<<(n+1) - 1) &^ 1 }

func daysIn(y int64, m int) int {
	if m == 2 && !(y%4 == 0 && (y%100 != 0 || y%400 == 0)) {
		return 28
	}
	return maxDaysIn[m]
}

func daysFromCivil(y int64, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	doy := int64((153*((m+9)%12)+2)/5 + d - 1)
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func civilFromDays(z int64) (y int64, m, d int) {
	z += 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	m = int(mp + 3)
	if m > 12 {
		m -= 12
	}
	y = yoe + era*400
	if m <= 2 {
		y++
	}
	return y, m, d
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

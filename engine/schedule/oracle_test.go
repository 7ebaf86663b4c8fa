package schedule

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adhocore/gronx"
)

// TestNextMatchesOracle checks Next against a brute-force oracle written from the rules alone.
//
// The oracle walks real time one UTC minute at a time and converts each minute to the zone's
// wall clock with the time package (one Zone() lookup per hour, and per minute in any hour
// whose two ends have different offsets). It then applies runtime.md §2 literally:
//
//   - a job whose hour field starts with '*' fires at minute u iff the wall time at u matches;
//   - any other job keeps "reached", the highest wall time the clock has shown so far. At
//     minute u the clock newly reaches the wall times (reached, wall(u)]: none in an autumn
//     overlap (the clock repeats times it already showed, so nothing fires again), exactly
//     wall(u) normally, and every time lost in a spring gap plus wall(u) on the first minute
//     after it. The job fires at u, once, iff any of those newly reached times matches.
//
// Whether a wall time matches is decided by gronx (IsDue on the minute/hour fields and on the
// date fields separately), not by our parser. Up to 64 expressions are evaluated together as
// the bits of one word, so one walk serves a whole set.
//
// Coverage, in each zone of oracleZones over [2017-01-01, 2027-01-01) UTC:
//   - every expression of representativeExprs over the whole ten years, minute by minute;
//   - 64 random expressions (genExpr, seeded per zone) over a window of ±30 hours around
//     every offset change of the zone in those ten years and around two random instants;
//   - for each expression and window, Next from random instants (random seconds and
//     nanoseconds) against the oracle's first trigger after that instant.
//
// The chain Next(Next(...)) from the start of each window must equal the oracle's triggers:
// none missed, none doubled. -short keeps every zone but walks five years (2018-06..2023-06,
// still with DST in each zone) and 16 random expressions per zone.
func TestNextMatchesOracle(t *testing.T) {
	t.Parallel()
	from := time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	randomPerZone := 64
	if testing.Short() {
		// Still a year of DST in every zone: Sao Paulo's last, Cairo's first after its return.
		from = time.Date(2018, 6, 1, 0, 0, 0, 0, time.UTC)
		to = time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC)
		randomPerZone = 16
	}
	runOracle(t, oracleZones, from, to, randomPerZone)
}

// TestNextMatchesOracleFarFuture covers years past the zones' explicit transitions, where Go
// derives periods from each zone's TZ rule, including the end of a leap year there
// (golang/go#81583).
func TestNextMatchesOracleFarFuture(t *testing.T) {
	t.Parallel()
	from := time.Date(2095, 9, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2097, 5, 1, 0, 0, 0, 0, time.UTC)
	if testing.Short() {
		from = time.Date(2096, 9, 1, 0, 0, 0, 0, time.UTC)
	}
	runOracle(t, []string{"America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago", "Europe/Berlin"}, from, to, 16)
}

func runOracle(t *testing.T, zones []string, from, to time.Time, randomPerZone int) {
	rep := newOracle(t, representativeExprs)
	for zi, name := range zones {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			t.Parallel()
			loc := mustLoad(t, name)
			z := walkZone(t, loc, from, to)

			// Representative expressions over the whole range.
			fires := rep.run(t, z, 0, len(z.walls))
			compared := 0
			for e, expr := range rep.exprs {
				compared += checkAgainstOracle(t, loc, z, 0, len(z.walls), expr, fires[e], rand.New(rand.NewPCG(uint64(zi), uint64(e))))
			}

			// Random expressions around every transition.
			seed := uint64(from.Year())*1000 + uint64(zi)
			r := rand.New(rand.NewPCG(seed, 7))
			var exprs []string
			for len(exprs) < randomPerZone {
				expr := genExpr(r, len(exprs)%16 == 0)
				if _, err := Parse(expr, loc); err == nil {
					exprs = append(exprs, expr)
				}
			}
			ro := newOracle(t, exprs)
			// Plus two random two-day windows, so that zones without transitions get random
			// expressions too.
			windows := z.transitionWindows(30*60, r)
			for _, w := range windows {
				fires := ro.run(t, z, w[0], w[1])
				for e, expr := range exprs {
					compared += checkAgainstOracle(t, loc, z, w[0], w[1], expr, fires[e], r)
				}
			}
			t.Logf("%s %s..%s: %d transitions; %d representative expressions over the whole range; %d random expressions (seed %d) x %d windows; %d triggers compared",
				name, from.Format(time.DateOnly), to.Format(time.DateOnly), len(z.transitions), len(rep.exprs), len(exprs), seed, len(windows), compared)
			if name != "UTC" && name != "Asia/Kolkata" && len(z.transitions) == 0 {
				t.Errorf("%s: no transitions in range; the zone list is stale", name)
			}
		})
	}
}

var oracleZones = []string{
	"America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago",
	"Pacific/Chatham", "UTC", "Asia/Kolkata", "America/Sao_Paulo", "Europe/London",
	"Africa/Casablanca", "America/Asuncion", "Asia/Beirut", "America/Nuuk",
	"Africa/Cairo", "Asia/Tehran", "Pacific/Apia", "Antarctica/Troll", "Europe/Dublin",
	"America/St_Johns",
}

// representativeExprs mixes elapsed-time jobs (hour field '*...') with wall-clock jobs at the
// hours DST changes happen in, including midnight and the half and three-quarter hours.
var representativeExprs = []string{
	// elapsed time; most zones change on a weekend, so the frequent ones run on weekends only
	"0 * * * *", "30 * * * 0,6", "45 */3 * * *", "*/20 * * * 0", "15 * * * 0", "*/15 * 1 * *",
	// wall clock
	"0 0 * * *", "30 0 * * *", "0 1 * * *", "30 1 * * *", "0 2 * * *", "30 2 * * *",
	"45 2 * * *", "0 3 * * *", "15 3 * * *", "0 4 * * *", "*/10 2 * * *", "* 0 * 3,4,9,10 *",
	"*/15 1-3 * * 0", "30 23 * * *", "0 22-23 * * *", "59 23 * * *", "0 0 29 2 *",
	"30 2 * * 0", "0 0 1 * *", "0 0-3 * * *", "0 12 * * 1-5", "0 0,12 1,15 * SAT",
	"0 2 8-14 3 0", "30 2 * * 7", "0 0 31 * *",
}

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// zoneWalk is the wall clock of one zone at every UTC minute of a range.
type zoneWalk struct {
	loc         *time.Location
	start       int64   // unix seconds of walls[0]
	walls       []int32 // wall minute (minutes since 1970-01-01 00:00 local) at start+60*i
	before      int32   // highest wall minute during the two days before start
	transitions []int   // i where the offset differs from the one at i-1
}

// walkZone fills a few million entries per zone; like oracle.run it is left out of the race
// detector's instrumentation (go:norace) to keep the package's -race run short.
//
//go:norace
func walkZone(t *testing.T, loc *time.Location, from, to time.Time) *zoneWalk {
	offsetAt := func(u int64) int64 {
		_, off := time.Unix(u, 0).In(loc).Zone()
		if off%60 != 0 {
			t.Fatalf("%s: offset %ds at %d is not whole minutes", loc, off, u)
		}
		return int64(off)
	}
	z := &zoneWalk{loc: loc, start: from.Unix(), walls: make([]int32, int(to.Sub(from)/time.Minute))}
	// Offsets change at most once an hour in every zone, so an hour whose ends share an offset
	// has it throughout.
	o1 := offsetAt(z.start)
	for i := 0; i < len(z.walls); i += 60 {
		h := z.start + int64(i)*60
		o0 := o1
		o1 = offsetAt(h + 3600)
		for m := range 60 {
			u, off := h+int64(m)*60, o0
			if o0 != o1 {
				off = offsetAt(u)
			}
			z.walls[i+m] = int32((u + off) / 60)
		}
	}
	z.before = -1 << 31
	for u := z.start - 2*86400; u < z.start; u += 60 {
		z.before = max(z.before, int32((u+offsetAt(u))/60))
	}
	for i := 1; i < len(z.walls); i++ {
		if z.walls[i]-z.walls[i-1] != 1 {
			z.transitions = append(z.transitions, i)
		}
	}
	return z
}

// reachedBefore is the highest wall minute shown before index i.
func (z *zoneWalk) reachedBefore(i int) int32 {
	r := z.before
	if i >= 2*1440 {
		r = -1 << 31
	}
	for _, w := range z.walls[max(0, i-2*1440):i] {
		r = max(r, w)
	}
	return r
}

// transitionWindows returns merged index ranges of ±margin minutes around every transition and
// around two random instants.
func (z *zoneWalk) transitionWindows(margin int, r *rand.Rand) [][2]int {
	centers := slices.Clone(z.transitions)
	for range 2 {
		centers = append(centers, margin+r.IntN(len(z.walls)-2*margin))
	}
	slices.Sort(centers)
	var out [][2]int
	for _, i := range centers {
		a, b := max(0, i-margin), min(len(z.walls), i+margin)
		if n := len(out); n > 0 && a <= out[n-1][1] {
			out[n-1][1] = b
			continue
		}
		out = append(out, [2]int{a, b})
	}
	return out
}

// oracle decides matches for up to 64 expressions at once: bit e is expression e.
type oracle struct {
	exprs   []string
	daySegs [][]string // gronx segments of "0 0 DOM MONTH DOW"
	elapsed uint64
	hm      [1440]uint64 // by minute of day

	mu   sync.Mutex       // the representative oracle is shared by the zones' subtests
	days map[int32]uint64 // by local day number, filled from gronx on first use
}

func newOracle(t *testing.T, exprs []string) *oracle {
	if len(exprs) > 64 {
		t.Fatalf("oracle takes at most 64 expressions, got %d", len(exprs))
	}
	g := gronx.New()
	o := &oracle{exprs: exprs, days: map[int32]uint64{}}
	for e, expr := range exprs {
		f := strings.Fields(expr)
		if len(f) != 5 {
			t.Fatalf("oracle expression %q: want 5 fields", expr)
		}
		o.daySegs = append(o.daySegs, mustSegments(t, "0 0 "+strings.Join(f[2:], " ")))
		if strings.HasPrefix(f[1], "*") {
			o.elapsed |= 1 << e
		}
		minSegs, hourSegs := mustSegments(t, f[0]+" * * * *"), mustSegments(t, "0 "+f[1]+" * * *")
		var minOK [60]bool
		for m := range 60 {
			minOK[m] = segmentsDue(t, g, minSegs, time.Date(2001, 1, 1, 0, m, 0, 0, time.UTC))
		}
		for h := range 24 {
			if !segmentsDue(t, g, hourSegs, time.Date(2001, 1, 1, h, 0, 0, 0, time.UTC)) {
				continue
			}
			for m := range 60 {
				if minOK[m] {
					o.hm[h*60+m] |= 1 << e
				}
			}
		}
	}
	return o
}

func mustSegments(t *testing.T, expr string) []string {
	segs, err := gronx.Segments(expr)
	if err != nil {
		t.Fatalf("gronx.Segments(%q): %v", expr, err)
	}
	return segs
}

// segmentsDue is gronx.IsDue on pre-split segments: IsDue re-normalizes the expression with
// regular expressions on every call, which would dominate the oracle's cost.
func segmentsDue(t *testing.T, g *gronx.Gronx, segs []string, at time.Time) bool {
	g.C.SetRef(at)
	due, err := g.SegmentsDue(segs)
	if err != nil {
		t.Fatalf("gronx.SegmentsDue(%q, %s): %v", segs, at, err)
	}
	return due
}

func (o *oracle) day(t *testing.T, d int32) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if m, ok := o.days[d]; ok {
		return m
	}
	g := gronx.New()
	date := time.Unix(int64(d)*86400, 0).UTC()
	var m uint64
	for e, segs := range o.daySegs {
		if segmentsDue(t, g, segs, date) {
			m |= 1 << e
		}
	}
	o.days[d] = m
	return m
}

// run returns, per expression, the unix seconds of its triggers at minutes [a, b) of z.
//
// Its loop runs a hundred million times over the zones and touches only this goroutine's
// memory and read-only tables; instrumented, it would be the slowest part of the package's
// tests under -race.
//
//go:norace
func (o *oracle) run(t *testing.T, z *zoneWalk, a, b int) [][]int64 {
	out := make([][]int64, len(o.exprs))
	reached := z.reachedBefore(a)
	// The day lookup is hoisted out of the per-minute loop: one map access per local day.
	curDay, curBits := int32(-1), uint64(0)
	match := func(w int32) uint64 {
		if w/1440 != curDay {
			curDay, curBits = w/1440, o.day(t, w/1440)
		}
		return curBits & o.hm[w%1440]
	}
	for i := a; i < b; i++ {
		w := z.walls[i]
		now := match(w)
		fire := o.elapsed & now
		if w > reached {
			fresh := now
			for v := reached + 1; v < w; v++ {
				fresh |= match(v)
			}
			fire |= fresh &^ o.elapsed
			reached = w
		}
		for f := fire; f != 0; f &= f - 1 {
			e := bits.TrailingZeros64(f)
			out[e] = append(out[e], z.start+int64(i)*60)
		}
	}
	return out
}

// checkAgainstOracle compares the chain of Next calls over minutes [a, b) of z with want, and
// Next from a few random instants with the oracle's next trigger. It returns how many
// triggers it compared.
func checkAgainstOracle(t *testing.T, loc *time.Location, z *zoneWalk, a, b int, expr string, want []int64, r *rand.Rand) int {
	t.Helper()
	s, err := Parse(expr, loc)
	if err != nil {
		t.Fatalf("Parse(%q): %v", expr, err)
	}
	from, to := z.start+int64(a)*60, z.start+int64(b)*60
	got := make([]int64, 0, len(want))
	for at := time.Unix(from-60, 0); ; {
		next := s.Next(at)
		if !next.After(at) {
			t.Fatalf("%s %q: Next(%s) = %s, not after", loc, expr, at.In(loc), next)
		}
		if next.Unix() >= to {
			break
		}
		got = append(got, next.Unix())
		at = next
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s %q over %s..%s: Next chain differs from the oracle: %s", loc, expr,
			time.Unix(from, 0).In(loc), time.Unix(to, 0).In(loc), firstDifference(loc, got, want))
		return 0
	}
	for range 8 {
		if len(want) == 0 {
			break
		}
		after := from + r.Int64N(to-from)
		at := time.Unix(after, r.Int64N(2)*r.Int64N(1e9))
		k := sort.Search(len(want), func(i int) bool { return time.Unix(want[i], 0).After(at) })
		if k == len(want) {
			continue
		}
		if next := s.Next(at); next.Unix() != want[k] || next.Nanosecond() != 0 {
			t.Errorf("%s %q: Next(%s) = %s, oracle says %s", loc, expr, at.In(loc).Format(time.RFC3339Nano),
				next.Format(time.RFC3339), time.Unix(want[k], 0).In(loc).Format(time.RFC3339))
		}
	}
	return len(want)
}

func firstDifference(loc *time.Location, got, want []int64) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	show := func(xs []int64) string {
		var parts []string
		for _, x := range xs[max(0, i-2):min(len(xs), i+3)] {
			parts = append(parts, time.Unix(x, 0).In(loc).Format("2006-01-02T15:04Z07:00"))
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprintf("%d vs %d triggers, first difference at #%d: got %s, want %s", len(got), len(want), i, show(got), show(want))
}

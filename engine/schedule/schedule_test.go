package schedule

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/adhocore/gronx"
)

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	cases := []struct{ expr, want string }{
		{"*/5 * * * *", "*/5 * * * *"},
		{"0 */5 * * * *", "*/5 * * * *"}, // six fields, seconds exactly 0 (hub.md §10.4)
		{"0 0 3 * * *", "0 3 * * *"},
		{"  0\t9  * *   mon-fri ", "0 9 * * MON-FRI"},
		{"0 0 1 jan,Jul *", "0 0 1 JAN,JUL *"},
		{"15,45 1-5/2 1,15 */3 1-7/2", "15,45 1-5/2 1,15 */3 1-7/2"},
		{"5/15 * * * *", "5/15 * * * *"},
		{"0 0 * * 7", "0 0 * * 7"},
		{"00 05 * * *", "00 05 * * *"},
		{"0 0 29 2 *", "0 0 29 2 *"},
		{"0 0 31 4 1", "0 0 31 4 1"}, // 31 April never exists, but Mondays in April do (OR rule)
		{"@daily", "0 0 * * *"},
		{"@Hourly", "0 * * * *"},
		{"@weekly", "0 0 * * 0"},
		{"@monthly", "0 0 1 * *"},
		{"@yearly", "0 0 1 1 *"},
		{"@annually", "0 0 1 1 *"},
		{"@15minutes", "*/15 * * * *"},
		{"@30minutes", "0,30 * * * *"},
	}
	for _, c := range cases {
		s, err := Parse(c.expr, time.UTC)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.expr, err)
			continue
		}
		if s.String() != c.want {
			t.Errorf("Parse(%q).String() = %q, want %q", c.expr, s.String(), c.want)
		}
		if !gronx.IsValid(c.expr) {
			t.Errorf("we accept %q, gronx does not", c.expr)
		}
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	cases := []string{
		"", "   ", "* * * *", "* * * * * * *",
		"10 * * * * *", "*/10 * * * * *", "* * * * * *", "00 * * * * *", // sub-minute (hub.md §10.4)
		"60 * * * *", "* 24 * * *", "* * 0 * *", "* * 32 * *", "* * * 0 *", "* * * 13 *", "* * * * 8",
		"5-3 * * * *", "*/0 * * * *", "1/0 * * * *", "-1 * * * *", "1- * * * *", "-5 * * * *",
		"1,,2 * * * *", ",1 * * * *", "a * * * *", "1.5 * * * *", "+1 * * * *", "007 * * * *",
		"*/1000 * * * *", "*,5 * * * *", "5,* * * * *", "*-5 * * * *", "? * * * *", "0 0 ? * *",
		"0 0 L * *", "0 0 15W * *", "0 0 * * 5L", "0 0 * * 1#2", // Quartz extensions
		"0 0 * MON *", "0 0 * * JAN", "0 0 * * MONDAY", "0 0 * JANUARY *", // names outside their field
		"0 0 1 1 * 2030", "@reboot", "@midnight", "@everysecond", "@every 5m", "@daily 1",
		"0 0 * * 0/2/3", "0 0 * * 1-2-3",
		"0 * * * *\n", // gronx rejects a trailing newline; we never accept more than gronx
	}
	for _, expr := range cases {
		s, err := Parse(expr, time.UTC)
		if err == nil {
			t.Errorf("Parse(%q) = %q, want an error", expr, s)
			continue
		}
		if !errors.Is(err, ErrInvalidSchedule) || errors.Is(err, ErrNeverFires) {
			t.Errorf("Parse(%q): error %v does not match ErrInvalidSchedule only", expr, err)
		}
	}
}

func TestParseRejectsNeverFiring(t *testing.T) {
	t.Parallel()
	for _, expr := range []string{
		"0 0 31 4 *", "0 0 30 2 *", "0 0 30,31 FEB *", "0 0 31 2,4,6,9,11 *", "0 0 31 4-4 *",
		"0 0 31 4 */2", // '*/2' starts with '*', so the AND rule applies and 31 April is still required
		"0 0 31 4-6/2 *", "0 0 30 2/12 *",
	} {
		_, err := Parse(expr, time.UTC)
		if !errors.Is(err, ErrNeverFires) || !errors.Is(err, ErrInvalidSchedule) {
			t.Errorf("Parse(%q): %v, want ErrNeverFires matching ErrInvalidSchedule", expr, err)
		}
	}
	for _, expr := range []string{"0 0 31 4,5 *", "0 0 30 2 MON", "0 0 29 2 *", "0 0 31 */2 *", "0 0 31 * *"} {
		if _, err := Parse(expr, time.UTC); err != nil {
			t.Errorf("Parse(%q): %v", expr, err)
		}
	}
}

// TestNeverFiresMatchesBruteForce checks canFire's calendar reasoning: an expression is
// rejected as never firing exactly when no date of the 400-year Gregorian cycle matches its day
// fields (decided by gronx), and an accepted one fires at a time gronx agrees matches.
func TestNeverFiresMatchesBruteForce(t *testing.T) {
	t.Parallel()
	// One representative date per (month, day, weekday) that occurs in the cycle.
	var reps []time.Time
	seen := map[[3]int]bool{}
	for d := time.Date(2000, 3, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2400 || d.Month() < 3; d = d.AddDate(0, 0, 1) {
		k := [3]int{int(d.Month()), d.Day(), int(d.Weekday())}
		if !seen[k] {
			seen[k] = true
			reps = append(reps, d)
		}
	}
	r := rand.New(rand.NewPCG(11, 12))
	n := 300
	if testing.Short() {
		n = 80
	}
	rejected := 0
	g := gronx.New()
	for range n {
		// Day fields that are often impossible: late days, short months, AND rule.
		dom := pick(r, "29", "30", "31", "30,31", "29-31", "31/2", "30-31/1", genDOM(r))
		month := pick(r, "2", "4", "6", "9", "11", "2,4", "4-6", "*/2", "FEB", genMonth(r))
		dow := pick(r, "*", "*", "*/2", "*/3", genDOW(r))
		expr := "0 0 " + dom + " " + month + " " + dow
		s, err := Parse(expr, time.UTC)
		segs := mustSegments(t, expr)
		switch {
		case errors.Is(err, ErrNeverFires):
			rejected++
			for _, d := range reps {
				if segmentsDue(t, g, segs, d) {
					t.Errorf("Parse(%q) says it never fires, but %s matches", expr, d.Format("2006-01-02 Mon"))
					break
				}
			}
		case err != nil:
			t.Errorf("Parse(%q): %v", expr, err)
		default:
			at := time.Date(1990+r.IntN(50), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
			next := s.Next(at)
			if next.IsZero() || !next.After(at) || !segmentsDue(t, g, segs, next) {
				t.Errorf("Parse(%q) accepted it but Next(%s) = %s does not match", expr, at, next)
			}
		}
	}
	if rejected < n/10 {
		t.Errorf("only %d of %d generated expressions never fire; the generator no longer tests rejection", rejected, n)
	}
}

// TestEveryDateHitsEveryWeekday backs canFire: over the 400-year Gregorian cycle every existing
// (month, day), 29 February included, falls on each of the seven weekdays.
func TestEveryDateHitsEveryWeekday(t *testing.T) {
	t.Parallel()
	var weekdays [13][32]uint8
	for d := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2400; d = d.AddDate(0, 0, 1) {
		weekdays[d.Month()][d.Day()] |= 1 << d.Weekday()
	}
	for m := 1; m <= 12; m++ {
		for d := 1; d <= maxDaysIn[m]; d++ {
			if weekdays[m][d] != 0x7f {
				t.Errorf("%02d-%02d falls on weekdays %07b only", m, d, weekdays[m][d])
			}
		}
	}
}

func TestCalendarArithmetic(t *testing.T) {
	t.Parallel()
	for d := time.Date(-400, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2500; d = d.AddDate(0, 0, 1) {
		day := floorDiv(d.Unix(), secondsPerDay)
		if got := daysFromCivil(int64(d.Year()), int(d.Month()), d.Day()); got != day {
			t.Fatalf("daysFromCivil(%s) = %d, want %d", d.Format(time.DateOnly), got, day)
		}
		if y, m, dd := civilFromDays(day); y != int64(d.Year()) || m != int(d.Month()) || dd != d.Day() {
			t.Fatalf("civilFromDays(%d) = %d-%d-%d, want %s", day, y, m, dd, d.Format(time.DateOnly))
		}
		if daysIn(int64(d.Year()), int(d.Month())) < d.Day() {
			t.Fatalf("daysIn(%d, %d) < %d", d.Year(), d.Month(), d.Day())
		}
	}
}

func TestFeb29(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"UTC", "America/New_York", "Australia/Lord_Howe"} {
		loc := mustLoad(t, zone)
		s, err := Parse("0 0 29 2 *", loc)
		if err != nil {
			t.Fatal(err)
		}
		got := s.Preview(time.Date(2023, 6, 1, 0, 0, 0, 0, loc), 3)
		got = append(got, s.Preview(time.Date(2096, 2, 29, 0, 0, 0, 0, loc), 2)...) // 2100 is not leap
		var want []time.Time
		for _, y := range []int{2024, 2028, 2032, 2104, 2108} {
			want = append(want, time.Date(y, 2, 29, 0, 0, 0, 0, loc))
		}
		if !slices.EqualFunc(got, want, time.Time.Equal) {
			t.Errorf("%s: got %v, want %v", zone, got, want)
		}
	}
}

func TestDayOfMonthAndWeekdayRule(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC) // a Sunday
	days := func(expr string) []int {
		s, err := Parse(expr, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		var out []int
		for _, n := range s.Preview(at, 40) {
			if n.Month() != time.February {
				break
			}
			out = append(out, n.Day())
		}
		return out
	}
	cases := []struct {
		expr string
		want []int
	}{
		{"0 0 13 * 5", []int{6, 13, 20, 27}},            // both restricted: 13th OR Fridays
		{"0 0 10-12 * 0", []int{8, 10, 11, 12, 15, 22}}, // OR
		{"0 0 */2 * 5", []int{13, 27}},                  // day field starts with '*': odd days AND Fridays
		{"0 0 * * 5", []int{6, 13, 20, 27}},             // only the weekday restricted
		{"0 0 13 * *", []int{13}},                       // only the day restricted
		{"0 0 13 * */2", []int{}},                       // weekday starts with '*': 13th (Friday) AND even weekday
		{"0 0 * * 7", []int{8, 15, 22}},                 // 7 is Sunday (after the 1st: strictly after at)
		{"0 0 * * 0", []int{8, 15, 22}},
		{"0 0 * * 5-7", []int{6, 7, 8, 13, 14, 15, 20, 21, 22, 27, 28}},
		{"0 0 * * 6/7", []int{7, 14, 21, 28}},
		{"0 0 * * 7/3", []int{4, 7, 8, 11, 14, 15, 18, 21, 22, 25, 28}}, // gronx: a leading 7 is Sunday; Sun, Wed, Sat
	}
	for _, c := range cases {
		if got := days(c.expr); !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Errorf("%q fires on February %v, want %v", c.expr, got, c.want)
		}
	}
}

func TestStringRoundTrips(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		expr := genExpr(r, true)
		s, err := Parse(expr, time.UTC)
		if err != nil {
			continue
		}
		again, err := Parse(s.String(), time.UTC)
		if err != nil {
			t.Fatalf("Parse(%q) -> %q does not parse again: %v", expr, s, err)
		}
		if again.String() != s.String() || again.minutes != s.minutes || again.hours != s.hours || again.doms != s.doms ||
			again.months != s.months || again.dows != s.dows || again.dayAnd != s.dayAnd || again.elapsed != s.elapsed {
			t.Errorf("Parse(%q) and Parse(%q) compile differently", expr, s)
		}
	}
}

func TestLoadLocation(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "Local", "Mars/Olympus_Mons", "../etc/passwd", "america/new_york "} {
		if loc, err := LoadLocation(bad); !errors.Is(err, ErrInvalidTimezone) {
			t.Errorf("LoadLocation(%q) = %v, %v; want ErrInvalidTimezone", bad, loc, err)
		}
	}
	for _, good := range []string{"UTC", "America/New_York", "Pacific/Chatham", "Etc/GMT+5"} {
		loc, err := LoadLocation(good)
		if err != nil || loc.String() != good {
			t.Errorf("LoadLocation(%q) = %v, %v", good, loc, err)
		}
	}
	if _, err := Parse("0 0 * * *", nil); !errors.Is(err, ErrInvalidTimezone) {
		t.Errorf("Parse with a nil zone: %v, want ErrInvalidTimezone", err)
	}
}

func TestNextAndPreview(t *testing.T) {
	t.Parallel()
	loc := mustLoad(t, "Europe/Berlin")
	s, err := Parse("*/15 9-10 * * 1-5", loc)
	if err != nil {
		t.Fatal(err)
	}
	if s.Location() != loc {
		t.Errorf("Location() = %v", s.Location())
	}
	at := time.Date(2026, 5, 8, 10, 44, 59, 999999999, loc) // Friday
	want := []time.Time{
		time.Date(2026, 5, 8, 10, 45, 0, 0, loc),
		time.Date(2026, 5, 11, 9, 0, 0, 0, loc),
		time.Date(2026, 5, 11, 9, 15, 0, 0, loc),
	}
	got := s.Preview(at, 3)
	if !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Errorf("Preview = %v, want %v", got, want)
	}
	// Strictly after: from a trigger instant itself, and from a moment past it.
	if n := s.Next(want[0]); !n.Equal(want[1]) {
		t.Errorf("Next(%s) = %s, want %s", want[0], n, want[1])
	}
	if n := s.Next(want[0].Add(time.Nanosecond)); !n.Equal(want[1]) {
		t.Errorf("Next(%s+1ns) = %s, want %s", want[0], n, want[1])
	}
	// The zone of the argument does not matter, only the instant.
	if n := s.Next(at.UTC()); !n.Equal(want[0]) || n.Location() != loc {
		t.Errorf("Next(UTC) = %s", n)
	}
	if p := s.Preview(at, 0); p != nil {
		t.Errorf("Preview(0) = %v", p)
	}
	if p := s.Preview(at, -1); p != nil {
		t.Errorf("Preview(-1) = %v", p)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s, err := Parse("30 2 * * *", mustLoad(t, "America/New_York"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	want := s.Preview(at, 20)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if got := s.Preview(at, 20); !slices.EqualFunc(got, want, time.Time.Equal) {
				t.Errorf("concurrent Preview = %v, want %v", got, want)
			}
		})
	}
	wg.Wait()
}

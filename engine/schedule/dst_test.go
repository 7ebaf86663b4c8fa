package schedule

import (
	"strings"
	"testing"
	"time"
)

// TestDST pins the daylight-saving behaviour of runtime.md §2 on the transitions named there,
// with the expected instants written out by hand. Offsets in the expectations show which pass
// of a repeated hour fires.
func TestDST(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		zone  string
		expr  string
		after string // RFC 3339
		want  []string
	}{
		// New York, 2026-11-01: 02:00 EDT -> 01:00 EST, 01:00-01:59 happen twice.
		{"NYOverlapWallClockFiresFirstOnly", "America/New_York", "30 1 * * *", "2026-11-01T00:00:00-04:00",
			[]string{"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"}},
		{"NYOverlapFromFirstTrigger", "America/New_York", "30 1 * * *", "2026-11-01T01:30:00-04:00",
			[]string{"2026-11-02T01:30:00-05:00"}},
		{"NYOverlapFromSecondPass", "America/New_York", "30 1 * * *", "2026-11-01T01:10:00-05:00",
			[]string{"2026-11-02T01:30:00-05:00"}},
		{"NYOverlapWallClockMinuteList", "America/New_York", "*/30 1 * * *", "2026-11-01T00:00:00-04:00",
			[]string{"2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:00:00-05:00"}},
		{"NYOverlapElapsedHourlyFiresBoth", "America/New_York", "0 * * * *", "2026-11-01T00:30:00-04:00",
			[]string{"2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"}},
		{"NYOverlapElapsedHalfHour", "America/New_York", "30 * * * *", "2026-11-01T00:45:00-04:00",
			[]string{"2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00", "2026-11-01T02:30:00-05:00"}},
		{"NYOverlapLaterHourUnaffected", "America/New_York", "30 2 * * *", "2026-11-01T00:00:00-04:00",
			[]string{"2026-11-01T02:30:00-05:00", "2026-11-02T02:30:00-05:00"}},
		{"NYOverlapLaterHourMinuteList", "America/New_York", "*/10 2 * * *", "2026-11-01T01:59:00-05:00",
			[]string{"2026-11-01T02:00:00-05:00", "2026-11-01T02:10:00-05:00"}},
		{"NYOverlapElapsedFromSecondPass", "America/New_York", "*/20 * * * *", "2026-11-01T01:50:00-04:00",
			[]string{"2026-11-01T01:00:00-05:00", "2026-11-01T01:20:00-05:00"}},

		// New York, 2026-03-08: 02:00 EST -> 03:00 EDT, 02:00-02:59 do not exist.
		{"NYGapFiresAtEndOfGap", "America/New_York", "30 2 * * *", "2026-03-08T00:00:00-05:00",
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}},
		{"NYGapFiresOncePerGap", "America/New_York", "*/10 2 * * *", "2026-03-08T01:59:00-05:00",
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"}},
		{"NYGapEveryMinuteOfLostHourOnce", "America/New_York", "* 2 * * *", "2026-03-08T01:58:00-05:00",
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"}},
		{"NYGapAndExistingTimeAtSameInstant", "America/New_York", "0,30 2,3 * * *", "2026-03-08T01:00:00-05:00",
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00", "2026-03-09T02:00:00-04:00"}},
		{"NYGapElapsedSkips", "America/New_York", "0 * * * *", "2026-03-08T00:30:00-05:00",
			[]string{"2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"}},
		{"NYGapElapsedHalfHourSkips", "America/New_York", "30 * * * *", "2026-03-08T01:00:00-05:00",
			[]string{"2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00"}},
		{"NYGapSundayJob", "America/New_York", "30 2 * * 0", "2026-03-01T03:00:00-05:00",
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-15T02:30:00-04:00"}},
		{"NYBeforeGapUnaffected", "America/New_York", "59 1 * * *", "2026-03-08T00:00:00-05:00",
			[]string{"2026-03-08T01:59:00-05:00", "2026-03-09T01:59:00-04:00"}},
		{"NYAfterGapUnaffected", "America/New_York", "0 3 * * *", "2026-03-07T12:00:00-05:00",
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-09T03:00:00-04:00"}},

		// Lord Howe, 2025-04-06: 02:00 +11 -> 01:30 +10:30; 2025-10-05: 02:00 +10:30 -> 02:30 +11.
		{"LordHoweOverlapWallClock", "Australia/Lord_Howe", "45 1 * * *", "2025-04-06T00:00:00+11:00",
			[]string{"2025-04-06T01:45:00+11:00", "2025-04-07T01:45:00+10:30"}},
		{"LordHoweOverlapElapsed", "Australia/Lord_Howe", "*/15 * * * *", "2025-04-06T01:20:00+11:00",
			[]string{"2025-04-06T01:30:00+11:00", "2025-04-06T01:45:00+11:00", "2025-04-06T01:30:00+10:30",
				"2025-04-06T01:45:00+10:30", "2025-04-06T02:00:00+10:30"}},
		{"LordHoweGapWallClock", "Australia/Lord_Howe", "15 2 * * *", "2025-10-05T00:00:00+10:30",
			[]string{"2025-10-05T02:30:00+11:00", "2025-10-06T02:15:00+11:00"}},
		{"LordHoweGapLostAndKeptAtSameInstant", "Australia/Lord_Howe", "0,30 2 * * *", "2025-10-05T00:00:00+10:30",
			[]string{"2025-10-05T02:30:00+11:00", "2025-10-06T02:00:00+11:00"}},
		{"LordHoweGapElapsed", "Australia/Lord_Howe", "*/15 * * * *", "2025-10-05T01:40:00+10:30",
			[]string{"2025-10-05T01:45:00+10:30", "2025-10-05T02:30:00+11:00", "2025-10-05T02:45:00+11:00"}},

		// Santiago changes at midnight: 2024-09-08 00:00 -04 -> 01:00 -03 (Sunday), and
		// 2024-04-07 00:00 -03 -> 2024-04-06 23:00 -04 (Saturday's last hour happens twice).
		{"SantiagoMidnightGap", "America/Santiago", "0 0 * * *", "2024-09-07T12:00:00-04:00",
			[]string{"2024-09-08T01:00:00-03:00", "2024-09-09T00:00:00-03:00"}},
		{"SantiagoMidnightGapSundayOnly", "America/Santiago", "0 0 * * 0", "2024-09-01T12:00:00-04:00",
			[]string{"2024-09-08T01:00:00-03:00", "2024-09-15T00:00:00-03:00"}},
		{"SantiagoMidnightGapOncePerGap", "America/Santiago", "*/20 0 * * *", "2024-09-07T23:59:00-04:00",
			[]string{"2024-09-08T01:00:00-03:00", "2024-09-09T00:00:00-03:00"}},
		{"SantiagoSaturdayLastHourTwice", "America/Santiago", "30 23 * * *", "2024-04-06T12:00:00-03:00",
			[]string{"2024-04-06T23:30:00-03:00", "2024-04-07T23:30:00-04:00"}},
		{"SantiagoOverlapElapsed", "America/Santiago", "30 * * * *", "2024-04-06T22:45:00-03:00",
			[]string{"2024-04-06T23:30:00-03:00", "2024-04-06T23:30:00-04:00", "2024-04-07T00:30:00-04:00"}},

		// Chatham (+12:45/+13:45): 2025-09-28 02:45 -> 03:45; 2025-04-06 03:45 -> 02:45.
		{"ChathamGap", "Pacific/Chatham", "0 3 * * *", "2025-09-28T00:00:00+12:45",
			[]string{"2025-09-28T03:45:00+13:45", "2025-09-29T03:00:00+13:45"}},
		{"ChathamGapHalfPast", "Pacific/Chatham", "30 3 * * *", "2025-09-28T00:00:00+12:45",
			[]string{"2025-09-28T03:45:00+13:45", "2025-09-29T03:30:00+13:45"}},
		{"ChathamGapElapsed", "Pacific/Chatham", "0 * * * *", "2025-09-28T01:30:00+12:45",
			[]string{"2025-09-28T02:00:00+12:45", "2025-09-28T04:00:00+13:45"}},
		{"ChathamOverlapWallClock", "Pacific/Chatham", "0 3 * * *", "2025-04-06T00:00:00+13:45",
			[]string{"2025-04-06T03:00:00+13:45", "2025-04-07T03:00:00+12:45"}},
		{"ChathamOverlapElapsed", "Pacific/Chatham", "0 * * * *", "2025-04-06T02:30:00+13:45",
			[]string{"2025-04-06T03:00:00+13:45", "2025-04-06T03:00:00+12:45", "2025-04-06T04:00:00+12:45"}},

		// Samoa skipped 2011-12-30 entirely (-10 -> +14 at midnight): a whole day of wall times
		// is one gap, so a daily job fires once at its end.
		{"ApiaSkippedDay", "Pacific/Apia", "0 12 * * *", "2011-12-29T13:00:00-10:00",
			[]string{"2011-12-31T00:00:00+14:00", "2011-12-31T12:00:00+14:00"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			loc := mustLoad(t, c.zone)
			s, err := Parse(c.expr, loc)
			if err != nil {
				t.Fatal(err)
			}
			after := mustTime(t, c.after)
			got := s.Preview(after, len(c.want))
			var gotS []string
			for _, g := range got {
				gotS = append(gotS, g.Format(time.RFC3339))
				if g.Location() != loc {
					t.Errorf("Next returned a time in %s, want %s", g.Location(), loc)
				}
			}
			if strings.Join(gotS, " ") != strings.Join(c.want, " ") {
				t.Errorf("%s %q after %s:\n got  %v\n want %v", c.zone, c.expr, c.after, gotS, c.want)
			}
		})
	}
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

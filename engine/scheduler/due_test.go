package scheduler

import (
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/schedule"
)

func mustSched(t *testing.T, expr, zone string) *schedule.Schedule {
	t.Helper()
	loc, err := schedule.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schedule.Parse(expr, loc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func at(t *testing.T, zone, value string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	v, err := time.ParseInLocation("2006-01-02 15:04:05 -0700", value, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDecide is the table of "what is due at t": each case names its zone and every instant
// with its UTC offset, so DST cases say exactly which of two equal wall times they mean.
func TestDecide(t *testing.T) {
	t.Parallel()
	const jitter = 17 * time.Second
	type tc struct {
		name      string
		expr      string
		zone      string
		policy    string
		base      string
		catchUpAt string
		now       string
		want      Action
		source    string
		scheduled string // ScheduledAt
		next      string // Next (Wait, CatchUp)
		catchUp   string // CatchUpAt (CatchUp)
	}
	cases := []tc{
		{name: "NothingDue", expr: "0 3 * * *", zone: "UTC", base: "2026-03-01 03:00:00 +0000",
			now: "2026-03-01 12:00:00 +0000", want: Wait, next: "2026-03-02 03:00:00 +0000"},
		{name: "DueOnTime", expr: "0 3 * * *", zone: "UTC", base: "2026-03-01 03:00:00 +0000",
			now: "2026-03-02 03:00:00 +0000", want: Fire, source: "schedule", scheduled: "2026-03-02 03:00:00 +0000"},
		{name: "LateWithinGrace", expr: "0 3 * * *", zone: "UTC", base: "2026-03-01 03:00:00 +0000",
			now: "2026-03-02 03:00:59 +0000", want: Fire, source: "schedule", scheduled: "2026-03-02 03:00:00 +0000"},
		{name: "MissedPlansOneCatchUp", expr: "0 3 * * *", zone: "UTC", base: "2026-03-01 03:00:00 +0000",
			now: "2026-03-04 10:00:00 +0000", want: CatchUp, catchUp: "2026-03-04 10:00:17 +0000", next: "2026-03-04 10:00:17 +0000"},
		{name: "CatchUpDue", expr: "0 3 * * *", zone: "UTC", base: "2026-03-01 03:00:00 +0000", catchUpAt: "2026-03-04 10:00:17 +0000",
			now: "2026-03-04 10:00:17 +0000", want: Fire, source: "catch_up", scheduled: "2026-03-04 03:00:00 +0000"},
		{name: "CatchUpNotYet", expr: "0 3 * * *", zone: "UTC", base: "2026-03-01 03:00:00 +0000", catchUpAt: "2026-03-04 10:00:17 +0000",
			now: "2026-03-04 10:00:05 +0000", want: Wait, next: "2026-03-04 10:00:17 +0000"},
		{name: "CatchUpOvertakenByATrigger", expr: "*/5 * * * *", zone: "UTC", base: "2026-03-01 03:00:00 +0000", catchUpAt: "2026-03-04 10:00:50 +0000",
			now: "2026-03-04 10:05:00 +0000", want: Fire, source: "schedule", scheduled: "2026-03-04 10:05:00 +0000"},
		{name: "MissedSkip", expr: "0 * * * *", zone: "UTC", policy: MissedSkip, base: "2025-03-01 03:00:00 +0000",
			now: "2026-03-04 10:30:00 +0000", want: Skip, scheduled: "2026-03-04 10:00:00 +0000"},
		{name: "YearOfMinutesFiresTheCurrentOne", expr: "* * * * *", zone: "UTC", base: "2025-03-01 03:00:00 +0000",
			now: "2026-03-04 10:30:20 +0000", want: Fire, source: "schedule", scheduled: "2026-03-04 10:30:00 +0000"},
		{name: "ClockSteppedBackDoesNotRefire", expr: "0 3 * * *", zone: "UTC", base: "2026-03-02 03:00:00 +0000",
			now: "2026-03-02 02:30:00 +0000", want: Wait, next: "2026-03-03 03:00:00 +0000"},
		{name: "ZoneIsTheJobs", expr: "0 3 * * *", zone: "Asia/Tokyo", base: "2026-03-01 03:00:00 +0900",
			now: "2026-03-01 19:00:00 +0100", want: Fire, source: "schedule", scheduled: "2026-03-02 03:00:00 +0900"},
		// New York springs forward at 02:00 EST to 03:00 EDT on 2026-03-08: 02:30 does not exist and
		// fires once, at the first instant after the gap.
		{name: "SpringGapFiresAfterTheGap", expr: "30 2 * * *", zone: "America/New_York", base: "2026-03-07 02:30:00 -0500",
			now: "2026-03-08 03:00:00 -0400", want: Fire, source: "schedule", scheduled: "2026-03-08 03:00:00 -0400"},
		{name: "SpringGapNotBefore", expr: "30 2 * * *", zone: "America/New_York", base: "2026-03-07 02:30:00 -0500",
			now: "2026-03-08 01:59:59 -0500", want: Wait, next: "2026-03-08 03:00:00 -0400"},
		// ...and falls back at 02:00 EDT to 01:00 EST on 2026-11-01: 01:30 happens twice and a
		// wall-clock job fires only on the first.
		{name: "AutumnOverlapFirstOccurrence", expr: "30 1 * * *", zone: "America/New_York", base: "2026-10-31 01:30:00 -0400",
			now: "2026-11-01 01:30:00 -0400", want: Fire, source: "schedule", scheduled: "2026-11-01 01:30:00 -0400"},
		{name: "AutumnOverlapNoSecondFire", expr: "30 1 * * *", zone: "America/New_York", base: "2026-11-01 01:30:00 -0400",
			now: "2026-11-01 01:30:00 -0500", want: Wait, next: "2026-11-02 01:30:00 -0500"},
		// An elapsed-time job (hour field "*") fires at each real occurrence.
		{name: "AutumnOverlapElapsedFiresTwice", expr: "30 * * * *", zone: "America/New_York", base: "2026-11-01 01:30:00 -0400",
			now: "2026-11-01 01:30:00 -0500", want: Fire, source: "schedule", scheduled: "2026-11-01 01:30:00 -0500"},
		// Lord Howe moves by 30 minutes: 02:00 +1030 becomes 02:30 +1100 on 2026-10-04.
		{name: "LordHoweHalfHourGap", expr: "15 2 * * *", zone: "Australia/Lord_Howe", base: "2026-10-03 02:15:00 +1030",
			now: "2026-10-04 02:30:00 +1100", want: Fire, source: "schedule", scheduled: "2026-10-04 02:30:00 +1100"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := mustSched(t, c.expr, c.zone)
			var catchUpAt time.Time
			if c.catchUpAt != "" {
				catchUpAt = at(t, c.zone, c.catchUpAt)
			}
			policy := c.policy
			if policy == "" {
				policy = MissedRunOnce
			}
			d := Decide(s, policy, at(t, c.zone, c.base), catchUpAt, time.Minute, jitter, at(t, c.zone, c.now))
			if d.Action != c.want || d.Source != c.source {
				t.Fatalf("Decide = %s %q, want %s %q (%+v)", d.Action, d.Source, c.want, c.source, d)
			}
			check := func(what string, got time.Time, want string) {
				t.Helper()
				if want == "" {
					if !got.IsZero() {
						t.Errorf("%s = %v, want none", what, got)
					}
					return
				}
				if w := at(t, c.zone, want); !got.Equal(w) {
					t.Errorf("%s = %v, want %v", what, got.In(w.Location()), w)
				}
			}
			check("ScheduledAt", d.ScheduledAt, c.scheduled)
			check("Next", d.Next, c.next)
			check("CatchUpAt", d.CatchUpAt, c.catchUp)
		})
	}
}

func TestCatchUpJitterIsDeterministicAndBounded(t *testing.T) {
	t.Parallel()
	a, b := CatchUpJitter("job-a", time.Minute), CatchUpJitter("job-b", time.Minute)
	if a != CatchUpJitter("job-a", time.Minute) || a == b {
		t.Fatalf("jitter a=%v b=%v: want stable per job and different across jobs", a, b)
	}
	spread := map[time.Duration]bool{}
	for i := range 200 {
		j := CatchUpJitter(string(rune('a'+i%26))+time.Duration(i).String(), time.Minute)
		if j < 0 || j >= time.Minute {
			t.Fatalf("jitter %v out of [0, 1m)", j)
		}
		spread[j/(10*time.Second)] = true
	}
	if len(spread) < 6 {
		t.Fatalf("200 jobs fell into %d of 6 ten-second buckets: not spread", len(spread))
	}
	if CatchUpJitter("x", 0) != 0 {
		t.Fatal("zero max must give zero jitter")
	}
}

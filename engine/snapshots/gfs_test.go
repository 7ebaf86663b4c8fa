package snapshots

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/storage"
)

// gfsZones are zones whose DST rules make wall-clock periods awkward: Berlin repeats an hour,
// Santiago moves midnight, Lord Howe shifts by 30 minutes.
var gfsZones = []string{"UTC", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe", "Asia/Kathmandu"}

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return loc
}

// transitions lists the instants in [from, to) where loc's UTC offset changes (to a minute).
func transitions(loc *time.Location, from, to time.Time) []time.Time {
	var out []time.Time
	_, prev := from.In(loc).Zone()
	for t := from; t.Before(to); t = t.Add(15 * time.Minute) {
		if _, off := t.In(loc).Zone(); off != prev {
			out = append(out, t)
			prev = off
		}
	}
	return out
}

// modelKeep is the brute-force reading of the policy: per snapshot, the set of rules that keep
// it. GFS: group the unpinned snapshots by calendar period in loc, take the n latest periods
// that hold any, and keep the newest snapshot of each.
func modelKeep(snaps []storage.RunArtifact, p jobspec.Retention, now time.Time, loc *time.Location) map[string][]string {
	newer := func(a, b storage.RunArtifact) bool { // a newer than b
		if a.EndedAt != b.EndedAt {
			return a.EndedAt > b.EndedAt
		}
		return a.RunID > b.RunID
	}
	out := map[string][]string{}
	var unpinned []storage.RunArtifact
	for _, s := range snaps {
		if s.PinnedAt != nil {
			out[s.RunID] = append(out[s.RunID], ReasonPinned)
		} else {
			unpinned = append(unpinned, s)
		}
	}
	if p.KeepLast != nil {
		for _, s := range unpinned {
			rank := 1
			for _, o := range unpinned {
				if newer(o, s) {
					rank++
				}
			}
			if rank <= *p.KeepLast {
				out[s.RunID] = append(out[s.RunID], ReasonKeepLast)
			}
		}
	}
	if p.KeepDays != nil && *p.KeepDays > 0 {
		for _, s := range snaps {
			if now.Sub(time.Unix(s.EndedAt, 0)) <= time.Duration(*p.KeepDays)*24*time.Hour {
				out[s.RunID] = append(out[s.RunID], ReasonKeepDays)
			}
		}
	}
	type key [4]int
	rules := []struct {
		reason string
		n      *int
		key    func(t time.Time) key
	}{
		{ReasonKeepHourly, p.KeepHourly, func(t time.Time) key { return key{t.Year(), int(t.Month()), t.Day(), t.Hour()} }},
		{ReasonKeepDaily, p.KeepDaily, func(t time.Time) key { return key{t.Year(), int(t.Month()), t.Day()} }},
		{ReasonKeepWeekly, p.KeepWeekly, func(t time.Time) key { y, w := t.ISOWeek(); return key{y, w} }},
		{ReasonKeepMonth, p.KeepMonthly, func(t time.Time) key { return key{t.Year(), int(t.Month())} }},
		{ReasonKeepYearly, p.KeepYearly, func(t time.Time) key { return key{t.Year()} }},
	}
	for _, r := range rules {
		if r.n == nil || *r.n == 0 {
			continue
		}
		newest := map[key]storage.RunArtifact{}
		for _, s := range unpinned {
			k := r.key(time.Unix(s.EndedAt, 0).In(loc))
			if cur, ok := newest[k]; !ok || newer(s, cur) {
				newest[k] = s
			}
		}
		keys := make([]key, 0, len(newest))
		for k := range newest {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { // latest period first
			return slices.Compare(keys[i][:], keys[j][:]) > 0
		})
		for _, k := range keys[:min(*r.n, len(keys))] {
			id := newest[k].RunID
			out[id] = append(out[id], r.reason)
		}
	}
	return out
}

func randPolicy(r *rand.Rand) jobspec.Retention {
	p := jobspec.Retention{Enabled: true, MaxDeletePerTick: 50, MaxDeletePerDay: 200}
	opt := func(max int) *int {
		if r.IntN(3) == 0 {
			return nil
		}
		v := r.IntN(max + 1)
		return &v
	}
	p.KeepLast, p.KeepDays = opt(4), opt(10)
	p.KeepHourly, p.KeepDaily, p.KeepWeekly, p.KeepMonthly, p.KeepYearly = opt(8), opt(8), opt(6), opt(6), opt(3)
	return p
}

// randHistory scatters snapshots over two years, many of them within hours of a DST change, some
// sharing an end time.
func randHistory(r *rand.Rand, trans []time.Time, from, to time.Time) []storage.RunArtifact {
	n := 1 + r.IntN(60)
	out := make([]storage.RunArtifact, 0, n)
	for i := range n {
		var t time.Time
		switch {
		case len(trans) > 0 && r.IntN(2) == 0:
			t = trans[r.IntN(len(trans))].Add(time.Duration(r.IntN(6*3600)-3*3600) * time.Second)
		case i > 0 && r.IntN(8) == 0:
			t = time.Unix(out[r.IntN(len(out))].EndedAt, 0) // a tie on ended_at
		default:
			t = from.Add(time.Duration(r.Int64N(int64(to.Sub(from)))))
		}
		a := storage.RunArtifact{RunID: fmt.Sprintf("r%03d", i), EndedAt: t.Unix()}
		if r.IntN(10) == 0 {
			a.PinnedAt = ptr(int64(1))
		}
		out = append(out, a)
	}
	return out
}

// TestSelectMatchesBruteForceModel checks Select against modelKeep on random histories in zones
// with DST changes: the same snapshots kept, each for the same rules.
func TestSelectMatchesBruteForceModel(t *testing.T) {
	t.Parallel()
	from := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, zone := range gfsZones {
		t.Run(strings.ReplaceAll(zone, "/", "_"), func(t *testing.T) {
			t.Parallel()
			loc := mustZone(t, zone)
			trans := transitions(loc, from, to)
			if zone != "UTC" && zone != "Asia/Kathmandu" && len(trans) < 4 {
				t.Fatalf("%s: found %d DST changes in two years; tzdata missing?", zone, len(trans))
			}
			for seed := range uint64(400) {
				r := rand.New(rand.NewPCG(seed, 16))
				snaps := randHistory(r, trans, from, to)
				pol := randPolicy(r)
				now := to.Add(-time.Duration(r.IntN(400*24)) * time.Hour)
				plan := Select(snaps, pol, now, loc)
				want := modelKeep(snaps, pol, now, loc)
				got := map[string][]string{}
				for _, d := range plan.Keep {
					got[d.RunID] = d.Reasons
				}
				for _, d := range plan.Delete {
					if _, ok := want[d.RunID]; ok {
						t.Fatalf("seed %d: %s deleted, model keeps it for %v (policy %s)", seed, d.RunID, want[d.RunID], policyString(pol))
					}
				}
				for id, reasons := range got {
					w := slices.Sorted(slices.Values(want[id]))
					g := slices.Sorted(slices.Values(reasons))
					if !slices.Equal(w, g) {
						t.Fatalf("seed %d: %s kept for %v, model says %v (policy %s)", seed, id, g, w, policyString(pol))
					}
				}
				if len(plan.Keep)+len(plan.Delete) != len(snaps) {
					t.Fatalf("seed %d: plan lost snapshots", seed)
				}
			}
		})
	}
}

func policyString(p jobspec.Retention) string {
	f := func(v *int) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprint(*v)
	}
	return fmt.Sprintf("last=%s days=%s h=%s d=%s w=%s m=%s y=%s", f(p.KeepLast), f(p.KeepDays), f(p.KeepHourly),
		f(p.KeepDaily), f(p.KeepWeekly), f(p.KeepMonthly), f(p.KeepYearly))
}

// TestSelectGFSDetails: each kept snapshot names the period it stands for, in the job's zone, and
// each deleted one says why no rule keeps it.
func TestSelectGFSDetails(t *testing.T) {
	t.Parallel()
	berlin := mustZone(t, "Europe/Berlin")
	at := func(s string) int64 {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm.Unix()
	}
	snaps := []storage.RunArtifact{
		{RunID: "a", EndedAt: at("2026-12-05 23:30")}, // 22:30 UTC: still the 5th in Berlin
		{RunID: "b", EndedAt: at("2026-12-05 08:00")},
		{RunID: "c", EndedAt: at("2026-12-04 08:00")},
		{RunID: "d", EndedAt: at("2026-12-03 08:00")},
		{RunID: "p", EndedAt: at("2026-12-06 08:00"), PinnedAt: ptr(int64(1))},
	}
	pol := jobspec.Retention{Enabled: true, KeepLast: ptr(1), KeepDaily: ptr(2), KeepWeekly: ptr(1)}
	plan := Select(snaps, pol, time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), berlin)
	texts := func(d Decision) string {
		var out []string
		for _, x := range d.Details {
			out = append(out, fmt.Sprintf("%v:%s", x.Kept, x.Text))
		}
		return strings.Join(out, "; ")
	}
	got := map[string]string{}
	for _, d := range append(plan.Keep, plan.Delete...) {
		got[d.RunID] = texts(d)
	}
	want := map[string]string{
		"p": "true:pinned",
		"a": "true:keep_last 1; true:daily 2026-12-05; true:weekly 2026-W49",
		"b": "false:not among the newest 1; false:daily 2026-12-05 keeps the newer a; false:weekly 2026-W49 keeps the newer a",
		"c": "false:not among the newest 1; true:daily 2026-12-04; false:weekly 2026-W49 keeps the newer a",
		"d": "false:not among the newest 1; false:daily 2026-12-03 is older than the 2 daily periods kept; false:weekly 2026-W49 keeps the newer a",
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %s\n want %s", id, got[id], w)
		}
	}
	if fmt.Sprint(ids(plan.Delete)) != "[d b]" {
		t.Fatalf("delete = %v, want [d b]", ids(plan.Delete))
	}
}

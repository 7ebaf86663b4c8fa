// Package snapshots manages what successful runs leave on targets: the index, pinning, deletion
// through a retried queue, retention, and the cleanup of what failed runs left behind.
package snapshots

import (
	"fmt"
	"sort"
	"time"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/storage"
)

// Retention reasons, as the API reports them.
const (
	ReasonPinned     = "pinned"
	ReasonKeepLast   = "keep_last"
	ReasonKeepDays   = "keep_days"
	ReasonKeepHourly = "keep_hourly"
	ReasonKeepDaily  = "keep_daily"
	ReasonKeepWeekly = "keep_weekly"
	ReasonKeepMonth  = "keep_monthly"
	ReasonKeepYearly = "keep_yearly"
	ReasonDelete     = "delete"
	ReasonDisabled   = "retention_disabled"
)

// Decision is what retention does with one snapshot and why. Reasons are the stable codes of
// the rules that keep it (or "delete"); Details explain each rule for a person, for a kept
// snapshot why it is kept and for a deleted one why no rule keeps it.
type Decision struct {
	RunID   string   `json:"run_id"`
	EndedAt int64    `json:"ended_at"`
	Pinned  bool     `json:"pinned"`
	Reasons []string `json:"reasons"`
	Details []Detail `json:"details"`
}

// Detail is one rule's verdict on one snapshot. Text is the English sentence; the other fields
// let a UI say it in another language.
type Detail struct {
	// Rule is a reason code: pinned, keep_last, keep_days, keep_hourly … keep_yearly,
	// retention_disabled.
	Rule string `json:"rule"`
	// Kept tells whether this rule keeps the snapshot.
	Kept bool `json:"kept"`
	// Period is the snapshot's period for the GFS rules, in the job's timezone: "2026-12-05 14:00",
	// "2026-12-05", "2026-W49" (ISO week), "2026-12", "2026".
	Period string `json:"period,omitempty"`
	// Rank is the snapshot's place among those the rule keeps, 1 the newest (keep_last, GFS).
	Rank int `json:"rank,omitempty"`
	// Limit is the rule's setting (keep_last n, keep_days d, keep_daily n …).
	Limit int `json:"limit,omitempty"`
	// SupersededBy is the newer snapshot a GFS rule keeps for this snapshot's period.
	SupersededBy string `json:"superseded_by,omitempty"`
	Text         string `json:"text"`
}

// Plan splits a job's present snapshots into those kept and those to delete. Delete is ordered
// oldest first: when a cap limits a pass, the oldest go first.
type Plan struct {
	Keep   []Decision `json:"keep"`
	Delete []Decision `json:"delete"`
}

// period is one GFS rule: its reason code, the word used in explanations and how a time in the
// job's timezone maps to its period label.
type period struct {
	rule, word string
	n          *int
	label      func(t time.Time) string
}

func periods(p jobspec.Retention) []period {
	return []period{
		{ReasonKeepHourly, "hourly", p.KeepHourly, func(t time.Time) string { return t.Format("2006-01-02 15:00") }},
		{ReasonKeepDaily, "daily", p.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{ReasonKeepWeekly, "weekly", p.KeepWeekly, func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{ReasonKeepMonth, "monthly", p.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") }},
		{ReasonKeepYearly, "yearly", p.KeepYearly, func(t time.Time) string { return t.Format("2006") }},
	}
}

// Select applies a retention policy to present snapshots at now. A snapshot is kept when it is
// pinned, among the newest keep_last, ended within keep_days of now, or kept by a GFS rule; the
// rest are deleted. loc is the job's timezone, in which GFS periods are counted (nil: UTC).
//
// GFS follows restic's forget: for keep_X = n, walk the snapshots newest first and keep the
// newest snapshot of each period until n periods have one kept. Periods are wall-clock periods
// in loc (a repeated DST hour is one hourly period) and weeks are ISO weeks.
//
// Unlike the original, pinned snapshots take no keep_last slot and no GFS period: pinning one
// must not push an unpinned one out of "the last N".
func Select(snaps []storage.RunArtifact, policy jobspec.Retention, now time.Time, loc *time.Location) Plan {
	if loc == nil {
		loc = time.UTC
	}
	sorted := append([]storage.RunArtifact(nil), snaps...)
	sort.Slice(sorted, func(i, j int) bool { // newest first, by (ended_at, run_id)
		if sorted[i].EndedAt != sorted[j].EndedAt {
			return sorted[i].EndedAt > sorted[j].EndedAt
		}
		return sorted[i].RunID > sorted[j].RunID
	})
	keepLast := 0
	if policy.KeepLast != nil {
		keepLast = *policy.KeepLast
	}
	keepDays := 0
	if policy.KeepDays != nil {
		keepDays = *policy.KeepDays
	}
	cutoff := now.Unix() - int64(keepDays)*86400

	type bucket struct {
		period
		limit, kept int
		last        string // label of the newest period kept
		lastRun     string // the snapshot kept for it
	}
	var buckets []*bucket
	for _, p := range periods(policy) {
		if p.n != nil && *p.n > 0 {
			buckets = append(buckets, &bucket{period: p, limit: *p.n})
		}
	}

	var plan Plan
	unpinnedSeen := 0
	for _, s := range sorted {
		d := Decision{RunID: s.RunID, EndedAt: s.EndedAt, Pinned: s.PinnedAt != nil, Details: []Detail{}}
		keep := func(det Detail) {
			det.Kept = true
			d.Reasons = append(d.Reasons, det.Rule)
			d.Details = append(d.Details, det)
		}
		drop := func(det Detail) { d.Details = append(d.Details, det) }
		if !policy.Enabled {
			keep(Detail{Rule: ReasonDisabled, Text: "retention is disabled"})
		}
		if d.Pinned {
			keep(Detail{Rule: ReasonPinned, Text: "pinned"})
		} else {
			unpinnedSeen++
			switch {
			case unpinnedSeen <= keepLast:
				keep(Detail{Rule: ReasonKeepLast, Rank: unpinnedSeen, Limit: keepLast, Text: fmt.Sprintf("keep_last %d", unpinnedSeen)})
			case keepLast > 0:
				drop(Detail{Rule: ReasonKeepLast, Limit: keepLast, Text: fmt.Sprintf("not among the newest %d", keepLast)})
			}
		}
		if keepDays > 0 {
			if s.EndedAt >= cutoff {
				keep(Detail{Rule: ReasonKeepDays, Limit: keepDays, Text: fmt.Sprintf("within %d days", keepDays)})
			} else {
				drop(Detail{Rule: ReasonKeepDays, Limit: keepDays, Text: fmt.Sprintf("older than %d days", keepDays)})
			}
		}
		if !d.Pinned {
			t := time.Unix(s.EndedAt, 0).In(loc)
			for _, b := range buckets {
				label := b.label(t)
				switch {
				case b.kept > 0 && label == b.last:
					drop(Detail{Rule: b.rule, Period: label, SupersededBy: b.lastRun,
						Text: fmt.Sprintf("%s %s keeps the newer %s", b.word, label, b.lastRun)})
				case b.kept < b.limit:
					b.kept++
					b.last, b.lastRun = label, s.RunID
					keep(Detail{Rule: b.rule, Period: label, Rank: b.kept, Limit: b.limit, Text: b.word + " " + label})
				default:
					drop(Detail{Rule: b.rule, Period: label, Limit: b.limit,
						Text: fmt.Sprintf("%s %s is older than the %d %s periods kept", b.word, label, b.limit, b.word)})
				}
			}
		}
		if len(d.Reasons) > 0 {
			plan.Keep = append(plan.Keep, d)
			continue
		}
		d.Reasons = []string{ReasonDelete}
		plan.Delete = append(plan.Delete, d)
	}
	for i, j := 0, len(plan.Delete)-1; i < j; i, j = i+1, j-1 {
		plan.Delete[i], plan.Delete[j] = plan.Delete[j], plan.Delete[i]
	}
	return plan
}

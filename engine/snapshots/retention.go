// Package snapshots manages what successful runs leave on targets: the index, pinning, deletion
// through a retried queue, retention, and the cleanup of what failed runs left behind.
package snapshots

import (
	"sort"
	"time"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/storage"
)

// Retention reasons, as the API reports them.
const (
	ReasonPinned   = "pinned"
	ReasonKeepLast = "keep_last"
	ReasonKeepDays = "keep_days"
	ReasonDelete   = "delete"
	ReasonDisabled = "retention_disabled"
)

// Decision is what retention does with one snapshot and why.
type Decision struct {
	RunID   string   `json:"run_id"`
	EndedAt int64    `json:"ended_at"`
	Pinned  bool     `json:"pinned"`
	Reasons []string `json:"reasons"`
}

// Plan splits a job's present snapshots into those kept and those to delete. Delete is ordered
// oldest first: when a cap limits a pass, the oldest go first.
type Plan struct {
	Keep   []Decision `json:"keep"`
	Delete []Decision `json:"delete"`
}

// Select applies a retention policy to present snapshots at now: keep the pinned ones, the
// newest keep_last, and those that ended within keep_days; delete the rest.
//
// Unlike the original, pinned snapshots do not take keep_last slots: pinning one must not push
// an unpinned one out of "the last N".
func Select(snaps []storage.RunArtifact, policy jobspec.Retention, now time.Time) Plan {
	sorted := append([]storage.RunArtifact(nil), snaps...)
	sort.Slice(sorted, func(i, j int) bool { // newest first, by (ended_at, run_id)
		if sorted[i].EndedAt != sorted[j].EndedAt {
			return sorted[i].EndedAt > sorted[j].EndedAt
		}
		return sorted[i].RunID > sorted[j].RunID
	})
	var plan Plan
	keepLast := 0
	if policy.KeepLast != nil {
		keepLast = *policy.KeepLast
	}
	cutoff := int64(-1 << 62)
	if policy.KeepDays != nil && *policy.KeepDays > 0 {
		cutoff = now.Unix() - int64(*policy.KeepDays)*86400
	}
	unpinnedSeen := 0
	for _, s := range sorted {
		d := Decision{RunID: s.RunID, EndedAt: s.EndedAt, Pinned: s.PinnedAt != nil}
		if !policy.Enabled {
			d.Reasons = append(d.Reasons, ReasonDisabled)
		}
		if d.Pinned {
			d.Reasons = append(d.Reasons, ReasonPinned)
		} else {
			unpinnedSeen++
			if unpinnedSeen <= keepLast {
				d.Reasons = append(d.Reasons, ReasonKeepLast)
			}
		}
		if policy.KeepDays != nil && *policy.KeepDays > 0 && s.EndedAt >= cutoff {
			d.Reasons = append(d.Reasons, ReasonKeepDays)
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

package snapshots

import (
	"fmt"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/storage"
)

func ptr[T any](v T) *T { return &v }

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// snaps returns n snapshots ended one day apart, r0 the newest; pinned lists pinned indexes.
func snaps(n int, pinned ...int) []storage.RunArtifact {
	out := make([]storage.RunArtifact, n)
	for i := range out {
		out[i] = storage.RunArtifact{RunID: fmt.Sprintf("r%d", i), EndedAt: now.Add(-time.Duration(i) * 24 * time.Hour).Unix()}
	}
	for _, p := range pinned {
		out[p].PinnedAt = ptr(int64(1))
	}
	return out
}

func ids(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.RunID)
	}
	return out
}

func TestSelect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		snaps      []storage.RunArtifact
		policy     jobspec.Retention
		wantDelete string
	}{
		{"Disabled", snaps(5), jobspec.Retention{Enabled: false, KeepLast: ptr(1)}, "[]"},
		{"KeepLast", snaps(5), jobspec.Retention{Enabled: true, KeepLast: ptr(2)}, "[r4 r3 r2]"},
		{"KeepDays", snaps(5), jobspec.Retention{Enabled: true, KeepDays: ptr(2)}, "[r4 r3]"},
		{"Union", snaps(6), jobspec.Retention{Enabled: true, KeepLast: ptr(1), KeepDays: ptr(3)}, "[r5 r4]"},
		{"PinnedKeptAndNotCountedInKeepLast", snaps(5, 0, 3), jobspec.Retention{Enabled: true, KeepLast: ptr(2)}, "[r4]"},
		{"KeepLastLargerThanSet", snaps(3), jobspec.Retention{Enabled: true, KeepLast: ptr(10)}, "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := Select(tc.snaps, tc.policy, now, time.UTC)
			if got := fmt.Sprint(ids(plan.Delete)); got != tc.wantDelete {
				t.Fatalf("delete = %s, want %s", got, tc.wantDelete)
			}
			if len(plan.Keep)+len(plan.Delete) != len(tc.snaps) {
				t.Fatalf("plan lost snapshots: %d kept + %d deleted of %d", len(plan.Keep), len(plan.Delete), len(tc.snaps))
			}
			for _, d := range plan.Keep {
				if len(d.Reasons) == 0 {
					t.Fatalf("kept %s without a reason", d.RunID)
				}
			}
		})
	}
}

func TestSelectReasons(t *testing.T) {
	t.Parallel()
	plan := Select(snaps(3, 2), jobspec.Retention{Enabled: true, KeepLast: ptr(1), KeepDays: ptr(1)}, now, time.UTC)
	want := map[string]string{"r0": "[keep_last keep_days]", "r1": "[keep_days]", "r2": "[pinned]"}
	for _, d := range plan.Keep {
		if fmt.Sprint(d.Reasons) != want[d.RunID] {
			t.Errorf("%s reasons = %v, want %s", d.RunID, d.Reasons, want[d.RunID])
		}
	}
}

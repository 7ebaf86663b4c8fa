package httpapi_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/storage"
)

// The original's sections of the command center (command_center.rs), served beside ours.

type origCCItem struct {
	ID         string `json:"id"`
	Kind       string `json:"kind"`
	Severity   string `json:"severity"`
	Scope      string `json:"scope"`
	OccurredAt int64  `json:"occurred_at"`
	Context    struct {
		RunID    *string `json:"run_id"`
		NodeID   *string `json:"node_id"`
		NodeName *string `json:"node_name"`
	} `json:"context"`
	PrimaryAction struct{ Label, Href string } `json:"primary_action"`
}

type origCCSection struct {
	State string       `json:"state"`
	Items []origCCItem `json:"items"`
}

func (s origCCSection) ids() []string {
	var out []string
	for _, it := range s.Items {
		out = append(out, it.ID)
	}
	return out
}

type origCCSignal struct {
	RecentSuccessAt   *int64  `json:"recent_success_at"`
	RecentRunID       *string `json:"recent_run_id"`
	RecentOperationID *string `json:"recent_operation_id"`
	ActiveJobs        int64   `json:"active_jobs"`
	CoveredJobs       int64   `json:"covered_jobs"`
}

type origCC struct {
	Scope struct{ Requested, Effective string } `json:"scope"`
	Range struct {
		Preset   string `json:"preset"`
		From, To int64
	} `json:"range"`
	Attention         origCCSection `json:"attention"`
	CriticalActivity  origCCSection `json:"critical_activity"`
	Watchlist         origCCSection `json:"watchlist"`
	RecoveryReadiness struct {
		State    string                        `json:"state"`
		Overall  string                        `json:"overall"`
		Backup   origCCSignal                  `json:"backup"`
		Verify   origCCSignal                  `json:"verify"`
		Blockers []struct{ Kind, Href string } `json:"blockers"`
	} `json:"recovery_readiness"`
}

func (o origCC) blockers() []string {
	var out []string
	for _, b := range o.RecoveryReadiness.Blockers {
		out = append(out, b.Kind)
	}
	return out
}

func TestCommandCenterOriginalSections(t *testing.T) {
	t.Parallel()
	b := setupCommandCenter(t)
	get := func(t *testing.T, query string) origCC {
		t.Helper()
		resp := b.c.Do(t, http.MethodGet, "/api/command-center"+query, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("GET %s: %s", query, resp)
		}
		var out origCC
		resp.Decode(t, &out)
		return out
	}

	t.Run("EmptyHub", func(t *testing.T) {
		out := get(t, "")
		if out.Attention.State != "empty" || out.Watchlist.State != "empty" || out.CriticalActivity.State != "empty" ||
			out.RecoveryReadiness.State != "empty" || out.RecoveryReadiness.Overall != "empty" || len(out.RecoveryReadiness.Blockers) != 0 {
			t.Errorf("empty Hub = %+v", out)
		}
	})

	a1 := "a-1"
	b.jobOn(t, "j-hub", "hub nightly", nil, localSpec)
	b.jobOn(t, "j-old", "never ran", nil, localSpec)
	b.jobOn(t, "j-a", "agent job", &a1, localSpec)
	b.agent(t, "a-1", "web-1", b.now.Add(-5*time.Second), false)
	b.agent(t, "a-2", "web-2", b.now.Add(-time.Hour), false)
	b.agent(t, "a-3", "web-3", b.now.Add(-time.Hour), true)
	ok := b.run(t, "j-hub", storage.RunSuccess, b.now.Add(-3*time.Hour), -1, -1)
	failed := b.run(t, "j-hub", storage.RunFailed, b.now.Add(-time.Hour), -1, -1)
	running := b.run(t, "j-a", storage.RunRunning, time.Time{}, -1, -1)
	b.notification(t, "n-failed", failed, storage.NotificationFailed)
	b.notification(t, "n-queued", ok, storage.NotificationQueued)
	b.write(t, func(ctx context.Context, q storage.Q) error {
		run := "run"
		verifyEnd := b.now.Add(-2 * time.Hour).Unix()
		for _, o := range []storage.Operation{
			{ID: "op-verify", Kind: storage.OperationVerify, Status: storage.OperationSuccess, NodeID: "hub", StartedAt: verifyEnd - 60, EndedAt: &verifyEnd},
			{ID: "op-restore", Kind: storage.OperationRestore, Status: storage.OperationRunning, NodeID: "hub", StartedAt: b.now.Add(-time.Minute).Unix()},
		} {
			o.SubjectKind, o.SubjectID, o.CreatedAt, o.UpdatedAt = &run, &ok, o.StartedAt, o.StartedAt
			if err := q.InsertOperation(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})

	t.Run("EverySection", func(t *testing.T) {
		out := get(t, "")
		if out.Scope.Requested != "all" || out.Scope.Effective != "all" || out.Range.Preset != "24h" ||
			out.Range.To != b.now.Unix() || out.Range.From != b.now.Add(-24*time.Hour).Unix() {
			t.Errorf("scope %+v range %+v", out.Scope, out.Range)
		}
		// Critical first (the revocation is newer than the failure), then warnings, newest first.
		if want := []string{"agent:a-3", "run:" + failed, "notification:n-failed", "agent:a-2"}; !slices.Equal(out.Attention.ids(), want) || out.Attention.State != "ready" {
			t.Errorf("attention = %v, want %v", out.Attention.ids(), want)
		}
		run := out.Attention.Items[1]
		if run.Kind != "run_failed" || run.Severity != "critical" || run.Scope != "hub" || *run.Context.NodeID != "hub" ||
			*run.Context.NodeName != "Hub" || run.PrimaryAction.Href != "/runs/"+failed || run.OccurredAt != b.now.Add(-time.Hour).Unix() {
			t.Errorf("failed run item = %+v", run)
		}
		act := out.CriticalActivity.ids()
		if len(act) == 0 || act[0] != "activity-run:"+failed || !slices.Contains(act, "activity-op:op-restore") ||
			!slices.Contains(act, "activity-op:op-verify") || !slices.Contains(act, "activity-run:"+running) {
			t.Errorf("critical activity = %v", act)
		}
		watch := out.Watchlist.ids()
		if !slices.Contains(watch, "watch-run:"+running) || !slices.Contains(watch, "watch-op:op-restore") ||
			!slices.Contains(watch, "watch-notification:n-queued") || len(watch) != 3 {
			t.Errorf("watchlist = %v", watch)
		}
		for _, it := range out.Watchlist.Items {
			if it.ID == "watch-run:"+running && (it.Scope != "agent:a-1" || *it.Context.NodeName != "web-1") {
				t.Errorf("agent run in watchlist = %+v", it)
			}
		}
		rr := out.RecoveryReadiness
		if rr.State != "degraded" || rr.Overall != "degraded" ||
			rr.Backup.ActiveJobs != 3 || rr.Backup.CoveredJobs != 1 || *rr.Backup.RecentRunID != ok || *rr.Backup.RecentSuccessAt != b.now.Add(-3*time.Hour).Unix() ||
			rr.Verify.CoveredJobs != 1 || *rr.Verify.RecentOperationID != "op-verify" || *rr.Verify.RecentRunID != ok {
			t.Errorf("recovery readiness = %+v", rr)
		}
		if want := []string{"partial_backup_coverage", "partial_verification_coverage"}; !slices.Equal(out.blockers(), want) {
			t.Errorf("blockers = %v, want %v", out.blockers(), want)
		}
	})

	t.Run("ScopeHub", func(t *testing.T) {
		out := get(t, "?scope=hub")
		if out.Scope.Requested != "hub" || !slices.Equal(out.Attention.ids(), []string{"run:" + failed, "notification:n-failed"}) ||
			slices.Contains(out.Watchlist.ids(), "watch-run:"+running) || out.RecoveryReadiness.Backup.ActiveJobs != 2 {
			t.Errorf("hub scope = %+v", out)
		}
	})

	t.Run("ScopeAgent", func(t *testing.T) {
		out := get(t, "?scope=agent:a-1&range=7d")
		if out.Scope.Effective != "agent:a-1" || out.Range.Preset != "7d" || out.Range.From != b.now.Add(-7*24*time.Hour).Unix() ||
			out.Attention.State != "empty" || !slices.Equal(out.Watchlist.ids(), []string{"watch-run:" + running}) ||
			out.RecoveryReadiness.Backup.ActiveJobs != 1 || out.RecoveryReadiness.Backup.RecentRunID != nil {
			t.Errorf("agent scope = %+v", out)
		}
		if want := []string{"missing_backup", "missing_verification"}; !slices.Equal(out.blockers(), want) {
			t.Errorf("blockers = %v, want %v", out.blockers(), want)
		}
	})

	t.Run("ScopeUnknownAgent", func(t *testing.T) {
		// An agent that does not exist (or an id as long as a URL allows) is a scope with nothing
		// in it, not an error and not everything.
		for _, id := range []string{"nope", strings.Repeat("x", 4000)} {
			out := get(t, "?scope=agent:"+id)
			if out.Scope.Effective != "agent:"+id || out.Attention.State != "empty" || len(out.Watchlist.ids()) != 0 ||
				out.RecoveryReadiness.Backup.ActiveJobs != 0 {
				t.Errorf("scope agent:%.10s… = %+v", id, out)
			}
		}
	})

	t.Run("VerifyOlderThanBackup", func(t *testing.T) {
		// A newer success of the job verified two hours ago.
		b.run(t, "j-hub", storage.RunSuccess, b.now.Add(-30*time.Minute), -1, -1)
		out := get(t, "?scope=hub")
		if !slices.Contains(out.blockers(), "verify_older_than_backup") {
			t.Errorf("blockers = %v", out.blockers())
		}
	})

	t.Run("BadQueryIsRefused", func(t *testing.T) {
		for query, code := range map[string]string{"?scope=agent:": "invalid_scope", "?scope=node": "invalid_scope", "?range=1y": "invalid_range"} {
			resp := b.c.Do(t, http.MethodGet, "/api/command-center"+query, nil)
			if resp.Status != http.StatusBadRequest || resp.ErrorCode() != code {
				t.Errorf("%s: %s", query, resp)
			}
		}
	})
}

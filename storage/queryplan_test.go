package storage

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// hotQueries are the statements the Hub runs often or on large tables. Each must be answered
// through an index: a plain "SCAN <table>" in its plan fails the test. Add every new hot query
// here by the constant the code runs — never a copy of it — with representative arguments.
var hotQueries = []struct {
	name  string
	query string
	args  []any
}{
	{"runs of a job", qListRunsByJob, []any{"j", 50}},
	{"runs ended before (pruning)", qRunsEndedBefore, []any{1, 100}},
	{"active run of a job (overlap check)", qActiveRunOfJob, []any{"j"}},
	{"queued hub runs (run queue)", qQueuedHubRuns, []any{10}},
	{"queued runs of an agent", qQueuedAgentRuns, []any{"a", 10}},
	{"agents with queued runs", qQueuedRunAgents, nil},
	{"claim a run", qClaimRun, []any{1, "r"}},
	{"finish a run", qFinishRun, []any{RunSuccess, 1, nil, nil, nil, "r"}},
	{"interrupted runs (start)", qInterruptedRuns, nil},
	{"prune old runs", qPruneRuns, []any{1, 500}},
	{"run detail", qRunDetail, []any{"r"}},
	{"runs list (all runs)", planRunsQ, planRunsArgs},
	{"runs list after cursor", planRunsCursorQ, planRunsCursorArgs},
	{"runs list of a job after cursor", planRunsJobQ, planRunsJobArgs},
	{"latest run of a job (job list)", `SELECT j.id, (` + qLatestRunOfJob + `) FROM jobs j WHERE j.id = ?`, []any{"j"}},
	{"events of a run", qListEventsAfter, []any{"r", 0, 200}},
	{"next event sequence", qMaxEventSeq, []any{"r"}},
	{"session by id", qGetSession, []any{"s", 1}},
	{"sessions by expiry (pruning)", qPruneSessions, []any{1}},
	{"login throttle by client", qGetLoginThrottle, []any{"203.0.113.7"}},
	{"secret by kind, node and name", qGetSecret, []any{"webdav", "hub", "nas"}},
	{"secrets of a node and kind", qListSecrets, []any{"hub", "webdav"}},
	{"expired or used-up tokens (pruning)", qPruneTokens, []any{1}},
	{"stale throttle rows (pruning)", qPruneThrottle, []any{1, 1}},
	{"audit rows by age (pruning)", qPruneAudit, []any{1, 500}},
	{"snapshots page", qSnapshotsPage, []any{"j", 1, 1, "r", 50}},
	{"snapshots page by status", qSnapshotsPageByStatus, []any{"j", SnapshotPresent, 1, 1, "r", 50}},
	{"due delete tasks", DeleteQueue.qDue(), []any{1, 20}},
	{"next due delete task", DeleteQueue.qNextDue(), nil},
	{"due cleanup tasks", CleanupQueue.qDue(), []any{1, 20}},
	{"retention deletes today", qRetentionDeletesSince, []any{"j", 1}},
	{"operations of a run", qOperationsBySubject, []any{"run", "r", 100}},
	{"operations by status (recovery)", qOperationsByStatus, []any{OperationRunning, 100}},
	{"events of an operation", qOperationEvents, []any{"o", 0, 500}},
	{"agent by key hash (every agent connection)", qAgentByKeyHash, []any{[]byte("h")}},
	{"labels of an agent", qAgentLabels, []any{"a"}},
	{"open tasks of an agent (resend on connect)", qOpenAgentTasks, []any{"a", 0, "", 100}},
	{"unacknowledged agent tasks (ack timeout)", qUnackedAgentTasks, []any{`["a","b"]`, 1, 100}},
	{"agents owing tasks (agent timeout)", qAgentsOwingTasks, nil},
	{"interrupted operations (start)", qInterruptedOperations, []any{100}},
	{"jobs of an agent (config snapshot)", qAgentJobs, []any{"a"}},
	{"claim due notification", planClaimQ, planClaimArgs},
	{"next notification due", planNextDueQ, planNextDueArgs},
	{"recover expired notification leases", qRecoverExpiredLeases, []any{1, 1}},
	{"cancel queued notifications of a destination", qCancelQueuedForDestination, []any{"r", 1, "email", "ops"}},
	{"cancel queued notifications of a channel", qCancelQueuedForChannel, []any{"r", 1, "email"}},
	{"cancel all queued notifications", qCancelAllQueued, []any{"r", 1}},
	{"notification queue page", planQueueQ, planQueueArgs},
	{"notification queue page, filtered", planQueueFilteredQ, planQueueFilteredArgs},
	{"notification queue page after cursor", planQueueCursorQ, planQueueCursorArgs},
	{"notification queue count", planQueueCountQ, planQueueCountArgs},
	{"notification destinations", planDestinationsQ, planDestinationsArgs},
	{"dashboard: run totals of a day", qRunTotalsBetween, []any{1, 2}},
	{"dashboard: runs by status since", qRunsByStatusSince, []any{RunFailed, 1, 10}},
	{"dashboard: count runs by status since", qCountRunsByStatusSince, []any{RunFailed, 1}},
	{"dashboard: snapshots in a status", qSnapshotsInStatus, []any{SnapshotError, 20}},
	{"dashboard: count snapshots in a status", qCountSnapshotsInStatus, []any{SnapshotError}},
	{"dashboard: count jobs", qCountJobs, nil},
	{"command center: latest failed runs", qLatestFailedRuns, []any{1, 50}},
	{"command center: failed notifications", qRecentFailedNotifications, []any{1, 50}},
	{"command center: failed verifications", qFailedVerifications, []any{50}},
	{"command center: cleanup backlog", qCleanupBacklog, []any{1}},
	{"integrations: secrets of kinds", qSecretsOfKinds, []any{`["webdav","s3"]`}},
	{"bulk operations list", qListBulkOperations, []any{50}},
	{"bulk operation detail", qGetBulkOperation, []any{"o"}},
	{"bulk operation items", qBulkItems, []any{"o"}},
	{"queued bulk items (bulk loop)", qQueuedBulkItems, []any{8}},
	{"command center: runs in range", qRunsInRange, []any{1, 1, 40}},
	{"command center: failed runs in range", qProblemRunsInRange, []any{1, 32}},
	{"command center: operations in range", qRunOperationsInRange, []any{1, 24}},
	{"command center: pending notifications", qPendingNotificationsInRange, []any{1, 16}},
}

var (
	planRunsQ, planRunsArgs             = listRunsQuery(RunFilter{}, nil, 50)
	planRunsCursorQ, planRunsCursorArgs = listRunsQuery(RunFilter{Statuses: []string{RunFailed, RunSuccess}, NodeID: "hub"},
		&RunCursor{StartedAt: 5, ID: "r"}, 50)
	planRunsJobQ, planRunsJobArgs = listRunsQuery(RunFilter{JobID: "j"}, &RunCursor{StartedAt: 5, ID: "r"}, 50)
)

func TestHotQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "plan.db"), Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// No ANALYZE: the Hub keeps no planner statistics (see DB.Close), so plans here are the plans
	// a Hub runs with, whatever the size of its tables.
	for _, hq := range hotQueries {
		t.Run(hq.name, func(t *testing.T) {
			plan := explain(t, db, hq.query, hq.args)
			for _, step := range plan {
				// json_each walks a bound argument (a list of ids), not a stored table.
				if strings.HasPrefix(step, "SCAN ") && !strings.Contains(step, " USING ") &&
					!strings.HasPrefix(step, "SCAN json_each VIRTUAL TABLE") {
					t.Errorf("full table scan %q in plan %q of\n%s", step, plan, hq.query)
				}
			}
		})
	}
}

// TestJobRecoverySignalsReadEachJobsOwnRuns pins the per-job subqueries of the recovery
// signals to the job's own runs: a plan through the status indexes passes the scan check above
// yet reads every job's history once per job.
func TestJobRecoverySignalsReadEachJobsOwnRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "plan.db"), Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	joined := strings.Join(explain(t, db, qJobRecoverySignals, nil), "\n")
	for _, bad := range []string{"runs_status_started_at", "operations_status"} {
		if strings.Contains(joined, bad) {
			t.Errorf("plan reads %s:\n%s", bad, joined)
		}
	}
	if !strings.Contains(joined, "operations_subject (subject_kind=? AND subject_id=?)") {
		t.Errorf("verify operations not found by their run:\n%s", joined)
	}
}

// TestBulkCountsReadTheOperationsOwnItems: the item counts of an operation search its own items
// (the primary key), not every operation's items of a status, which the scan check above allows.
func TestBulkCountsReadTheOperationsOwnItems(t *testing.T) {
	t.Parallel()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "plan.db"), Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for name, q := range map[string]struct {
		query string
		args  []any
	}{"list": {qListBulkOperations, []any{50}}, "detail": {qGetBulkOperation, []any{"o"}}} {
		plan := strings.Join(explain(t, db, q.query, q.args), "\n")
		if strings.Contains(plan, "bulk_operation_items_status") {
			t.Errorf("%s: counts read every operation's items by status:\n%s", name, plan)
		}
	}
}

// TestRunOperationsInRangeStartFromTheRange: the command center's operations start from the
// time range (operations_status), not from every run's operations (operations_subject by kind).
func TestRunOperationsInRangeStartFromTheRange(t *testing.T) {
	t.Parallel()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "plan.db"), Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	plan := explain(t, db, qRunOperationsInRange, []any{1, 24})
	if len(plan) == 0 || !strings.Contains(plan[0], "operations_status (status=? AND started_at>?)") {
		t.Fatalf("plan does not start from the range:\n%s", strings.Join(plan, "\n"))
	}
}

// TestRecentFailedNotificationsReadOnlyThePage: the command center's failed notifications come
// from an index in their order, from the newest, so the query stops at its page instead of
// reading and sorting every failed notification kept.
func TestRecentFailedNotificationsReadOnlyThePage(t *testing.T) {
	t.Parallel()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "plan.db"), Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	joined := strings.Join(explain(t, db, qRecentFailedNotifications, []any{1, 50}), "\n")
	if strings.Contains(joined, "TEMP B-TREE") || !strings.Contains(joined, "notifications_status_created_at_id") {
		t.Errorf("plan:\n%s", joined)
	}
}

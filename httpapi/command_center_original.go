package httpapi

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// The original's sections of the command center (command_center.rs CommandCenterResponse),
// served beside our items: ?scope=all|hub|agent:<id> and ?range=24h|7d|30d choose what they
// cover; ?days keeps choosing our items' window.

// Section and readiness states, as the original names them.
const (
	sectionReady    = "ready"
	sectionEmpty    = "empty"
	sectionDegraded = "degraded"

	// How many rows each source reads and each section keeps.
	ccProblemRunsLimit = 32
	ccFailedNotesLimit = 20
	ccRecentRunsLimit  = 40
	ccRecentOpsLimit   = 24
	ccPendingNoteLimit = 16
	ccSectionLimit     = 8
	ccWatchlistLimit   = 6
)

var ccRanges = map[string]time.Duration{"24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour}

type ccScopeJSON struct {
	Requested string `json:"requested"`
	Effective string `json:"effective"`
}

type ccRangeJSON struct {
	Preset string `json:"preset"`
	From   int64  `json:"from"`
	To     int64  `json:"to"`
}

type ccContextJSON struct {
	RunID          *string `json:"run_id,omitempty"`
	JobID          *string `json:"job_id,omitempty"`
	JobName        *string `json:"job_name,omitempty"`
	NodeID         *string `json:"node_id,omitempty"`
	NodeName       *string `json:"node_name,omitempty"`
	OperationID    *string `json:"operation_id,omitempty"`
	NotificationID *string `json:"notification_id,omitempty"`
	Channel        *string `json:"channel,omitempty"`
	Status         *string `json:"status,omitempty"`
	Error          *string `json:"error,omitempty"`
}

type ccActionJSON struct {
	Label string `json:"label"`
	Href  string `json:"href"` // a page of this web UI
}

type ccItemJSON struct {
	ID              string        `json:"id"`
	Kind            string        `json:"kind"`
	Severity        string        `json:"severity"`
	Title           string        `json:"title"`
	Summary         string        `json:"summary"`
	OccurredAt      int64         `json:"occurred_at"`
	Scope           string        `json:"scope"` // hub or agent:<id>
	Context         ccContextJSON `json:"context"`
	PrimaryAction   ccActionJSON  `json:"primary_action"`
	SecondaryAction *ccActionJSON `json:"secondary_action,omitempty"`
}

type ccSectionJSON struct {
	State string       `json:"state"`
	Items []ccItemJSON `json:"items"`
	Note  *string      `json:"note,omitempty"`
}

type ccSignalJSON struct {
	RecentSuccessAt   *int64  `json:"recent_success_at"`
	RecentRunID       *string `json:"recent_run_id,omitempty"`
	RecentJobID       *string `json:"recent_job_id,omitempty"`
	RecentJobName     *string `json:"recent_job_name,omitempty"`
	RecentOperationID *string `json:"recent_operation_id,omitempty"`
	ActiveJobs        int64   `json:"active_jobs"`
	CoveredJobs       int64   `json:"covered_jobs"`
}

type ccBlockerJSON struct {
	Kind    string `json:"kind"`
	Title   string `json:"title"`
	Summary string `json:"summary"`
	Href    string `json:"href"`
}

type ccReadinessJSON struct {
	State    string          `json:"state"`
	Overall  string          `json:"overall"` // healthy, degraded, empty
	Backup   ccSignalJSON    `json:"backup"`
	Verify   ccSignalJSON    `json:"verify"`
	Blockers []ccBlockerJSON `json:"blockers"`
}

// ccScope is a parsed ?scope: "" agent means every node; hub alone; else one agent.
type ccScope struct {
	all   bool
	agent string // "" with !all: the Hub
}

// parseScope reads ?scope, the original's choice of node for the command center and the runs
// list: all (or absent), hub or agent:<id>.
func parseScope(raw string) (ccScope, error) {
	raw = strings.TrimSpace(raw)
	switch {
	case raw == "" || raw == "all":
		return ccScope{all: true}, nil
	case raw == secrets.HubNode:
		return ccScope{}, nil
	}
	if id, ok := strings.CutPrefix(raw, "agent:"); ok && strings.TrimSpace(id) != "" {
		return ccScope{agent: strings.TrimSpace(id)}, nil
	}
	return ccScope{}, respond.BadRequest("invalid_scope", "scope must be all, hub or agent:<id>").Reason("unsupported_value").Field("scope")
}

func (s ccScope) String() string {
	switch {
	case s.all:
		return "all"
	case s.agent == "":
		return secrets.HubNode
	}
	return "agent:" + s.agent
}

func (s ccScope) includes(agentID *string) bool {
	switch {
	case s.all:
		return true
	case s.agent == "":
		return agentID == nil
	}
	return agentID != nil && *agentID == s.agent
}

// parseCCQuery reads the original's ?scope and ?range (24h by default).
func parseCCQuery(r *http.Request, now time.Time) (ccScope, ccRangeJSON, error) {
	scope, err := parseScope(r.URL.Query().Get("scope"))
	if err != nil {
		return scope, ccRangeJSON{}, err
	}
	preset := strings.TrimSpace(r.URL.Query().Get("range"))
	if preset == "" {
		preset = "24h"
	}
	d, ok := ccRanges[preset]
	if !ok {
		return scope, ccRangeJSON{}, respond.BadRequest("invalid_range", "range must be 24h, 7d or 30d").Reason("unsupported_value").Field("range")
	}
	return scope, ccRangeJSON{Preset: preset, From: now.Add(-d).Unix(), To: now.Unix()}, nil
}

func nodeOf(agentID *string) *string {
	if agentID == nil {
		return ptrTo(secrets.HubNode)
	}
	return agentID
}

func nodeNameOf(agentID, agentName *string) *string {
	switch {
	case agentID == nil:
		return ptrTo("Hub")
	case agentName != nil && strings.TrimSpace(*agentName) != "":
		return agentName
	}
	return agentID
}

func runAction(runID string) ccActionJSON {
	return ccActionJSON{Label: "Open run", Href: "/runs/" + runID}
}

func jobAction(jobID string) *ccActionJSON {
	return &ccActionJSON{Label: "Open job", Href: "/jobs/" + jobID}
}

// runVerb says what happened to a run, after its job's name.
func runVerb(status string) string {
	switch status {
	case storage.RunFailed:
		return "failed"
	case storage.RunRejected:
		return "was rejected"
	case storage.RunRunning:
		return "is running"
	case storage.RunQueued:
		return "is queued"
	case storage.RunSuccess:
		return "completed successfully"
	case storage.RunCanceled:
		return "was canceled"
	}
	return "changed state"
}

func opVerb(kind, status string) string {
	switch status {
	case storage.OperationRunning:
		return kind + " is running"
	case storage.OperationSuccess:
		return kind + " completed"
	case storage.OperationFailed:
		return kind + " failed"
	case storage.OperationCanceled:
		return kind + " was canceled"
	}
	return kind + " changed state"
}

func finishedAt(started int64, ended *int64) int64 {
	if ended != nil {
		return *ended
	}
	return started
}

// ccSources is everything the original's sections are built from, read in one transaction.
type ccSources struct {
	problemRuns []storage.ActivityRun
	failedNotes []storage.FailedNotification
	agents      []storage.Agent
	recentRuns  []storage.ActivityRun
	recentOps   []storage.ActivityOperation
	pending     []storage.FailedNotification
	signals     []storage.JobRecoverySignal
}

func readCCSources(ctx context.Context, q storage.Q, from int64) (ccSources, error) {
	var src ccSources
	var err error
	if src.problemRuns, err = q.ProblemRunsInRange(ctx, from, ccProblemRunsLimit); err != nil {
		return src, err
	}
	if src.failedNotes, err = q.RecentFailedNotifications(ctx, from, ccFailedNotesLimit); err != nil {
		return src, err
	}
	if src.agents, err = q.ListAgents(ctx); err != nil {
		return src, err
	}
	if src.recentRuns, err = q.RunsInRange(ctx, from, ccRecentRunsLimit); err != nil {
		return src, err
	}
	if src.recentOps, err = q.RunOperationsInRange(ctx, from, ccRecentOpsLimit); err != nil {
		return src, err
	}
	if src.pending, err = q.PendingNotificationsInRange(ctx, from, ccPendingNoteLimit); err != nil {
		return src, err
	}
	src.signals, err = q.JobRecoverySignals(ctx)
	return src, err
}

func sectionOf(items []ccItemJSON, limit int) ccSectionJSON {
	if len(items) > limit {
		items = items[:limit]
	}
	if len(items) == 0 {
		return ccSectionJSON{State: sectionEmpty, Items: []ccItemJSON{}}
	}
	return ccSectionJSON{State: sectionReady, Items: items}
}

// attentionSection: failed and rejected runs and failed notifications in the range, and every
// revoked or offline agent; most severe first, then newest.
func (s *Server) attentionSection(src ccSources, scope ccScope, now int64) ccSectionJSON {
	items := []ccItemJSON{}
	for _, r := range src.problemRuns {
		if !scope.includes(r.AgentID) {
			continue
		}
		sev := sevWarning
		if r.Status == storage.RunFailed {
			sev = sevCritical
		}
		summary := fmt.Sprintf("Latest run finished as %s.", r.Status)
		if r.Error != nil {
			summary = *r.Error
		}
		items = append(items, ccItemJSON{ID: "run:" + r.RunID, Kind: "run_" + r.Status, Severity: sev,
			Title: r.JobName + " needs review", Summary: summary, OccurredAt: finishedAt(r.StartedAt, r.EndedAt), Scope: nodeScope(r.AgentID),
			Context: ccContextJSON{RunID: ptrTo(r.RunID), JobID: ptrTo(r.JobID), JobName: ptrTo(r.JobName), NodeID: nodeOf(r.AgentID),
				NodeName: nodeNameOf(r.AgentID, r.AgentName), Status: ptrTo(r.Status), Error: r.Error},
			PrimaryAction: runAction(r.RunID), SecondaryAction: jobAction(r.JobID)})
	}
	names := map[string]*string{}
	for _, a := range src.agents {
		names[a.ID] = a.Name
	}
	for _, n := range src.failedNotes {
		if !scope.includes(n.AgentID) {
			continue
		}
		summary := n.Channel + " destination needs retry."
		if n.LastError != nil {
			summary = *n.LastError
		}
		var agentName *string
		if n.AgentID != nil {
			agentName = names[*n.AgentID]
		}
		items = append(items, ccItemJSON{ID: "notification:" + n.ID, Kind: attnNotificationFailed, Severity: sevWarning,
			Title: "Notification delivery failed for " + n.JobName, Summary: summary, OccurredAt: n.UpdatedAt, Scope: nodeScope(n.AgentID),
			Context: ccContextJSON{RunID: ptrTo(n.RunID), JobID: ptrTo(n.JobID), JobName: ptrTo(n.JobName), NodeID: nodeOf(n.AgentID),
				NodeName: nodeNameOf(n.AgentID, agentName), NotificationID: ptrTo(n.ID), Channel: ptrTo(n.Channel), Error: n.LastError},
			PrimaryAction: ccActionJSON{Label: "Open queue", Href: "/notifications"}, SecondaryAction: &ccActionJSON{Label: "Open run", Href: "/runs/" + n.RunID}})
	}
	for _, a := range src.agents {
		if !scope.includes(&a.ID) {
			continue
		}
		name := agentName(a)
		it := ccItemJSON{ID: "agent:" + a.ID, Scope: "agent:" + a.ID, Context: ccContextJSON{NodeID: ptrTo(a.ID), NodeName: ptrTo(name)},
			PrimaryAction: ccActionJSON{Label: "Open agent", Href: "/agents/" + a.ID}}
		switch {
		case a.RevokedAt != nil:
			it.Kind, it.Severity, it.OccurredAt = "agent_revoked", sevCritical, *a.RevokedAt
			it.Title, it.Summary = name+" is revoked", "This agent must be enrolled again before it can receive work."
		case !s.viewAgent(a, now).Online:
			it.Kind, it.Severity, it.OccurredAt = "agent_offline", sevWarning, finishedAt(a.CreatedAt, a.LastSeenAt)
			it.Title, it.Summary = name+" is offline", "The Hub has not heard from this agent within its heartbeat window."
		default:
			continue
		}
		items = append(items, it)
	}
	slices.SortStableFunc(items, func(a, b ccItemJSON) int {
		return cmp.Or(cmp.Compare(severityRank[a.Severity], severityRank[b.Severity]), cmp.Compare(b.OccurredAt, a.OccurredAt))
	})
	return sectionOf(items, ccSectionLimit)
}

// activityRank orders critical activity: failures, then rejections and cancellations, then
// what is running, then restores and verifies, then the rest.
func activityRank(kind string) int {
	switch {
	case strings.Contains(kind, "failed"):
		return 0
	case strings.Contains(kind, "rejected"), strings.Contains(kind, "canceled"):
		return 1
	case strings.Contains(kind, "running"):
		return 2
	case strings.Contains(kind, "verify"), strings.Contains(kind, "restore"):
		return 3
	}
	return 4
}

func criticalActivitySection(src ccSources, scope ccScope) ccSectionJSON {
	items := []ccItemJSON{}
	for _, r := range src.recentRuns {
		if !scope.includes(r.AgentID) {
			continue
		}
		sev := sevInfo
		switch r.Status {
		case storage.RunFailed:
			sev = sevCritical
		case storage.RunRejected:
			sev = sevWarning
		}
		summary := "Hub scope activity."
		if r.AgentID != nil {
			summary = "Agent scope activity."
		}
		if r.Error != nil {
			summary = *r.Error
		}
		items = append(items, ccItemJSON{ID: "activity-run:" + r.RunID, Kind: "run_" + r.Status, Severity: sev,
			Title: r.JobName + " " + runVerb(r.Status), Summary: summary, OccurredAt: finishedAt(r.StartedAt, r.EndedAt), Scope: nodeScope(r.AgentID),
			Context: ccContextJSON{RunID: ptrTo(r.RunID), JobID: ptrTo(r.JobID), JobName: ptrTo(r.JobName), NodeID: nodeOf(r.AgentID),
				NodeName: nodeNameOf(r.AgentID, r.AgentName), Status: ptrTo(r.Status), Error: r.Error},
			PrimaryAction: runAction(r.RunID), SecondaryAction: jobAction(r.JobID)})
	}
	for _, o := range src.recentOps {
		if !scope.includes(o.AgentID) {
			continue
		}
		sev := sevInfo
		switch o.Status {
		case storage.OperationFailed:
			sev = sevCritical
		case storage.OperationCanceled:
			sev = sevWarning
		}
		summary := o.Kind + " operation of this run."
		if o.Error != nil {
			summary = *o.Error
		}
		items = append(items, ccItemJSON{ID: "activity-op:" + o.OpID, Kind: "operation_" + o.Kind + "_" + o.Status, Severity: sev,
			Title: o.JobName + " " + opVerb(o.Kind, o.Status), Summary: summary, OccurredAt: finishedAt(o.StartedAt, o.EndedAt), Scope: nodeScope(o.AgentID),
			Context: ccContextJSON{RunID: ptrTo(o.RunID), JobID: ptrTo(o.JobID), JobName: ptrTo(o.JobName), NodeID: nodeOf(o.AgentID),
				NodeName: nodeNameOf(o.AgentID, o.AgentName), OperationID: ptrTo(o.OpID), Status: ptrTo(o.Status), Error: o.Error},
			PrimaryAction: runAction(o.RunID), SecondaryAction: &ccActionJSON{Label: "Open operation", Href: "/operations/" + o.OpID}})
	}
	slices.SortStableFunc(items, func(a, b ccItemJSON) int {
		return cmp.Or(cmp.Compare(activityRank(a.Kind), activityRank(b.Kind)), cmp.Compare(b.OccurredAt, a.OccurredAt))
	})
	return sectionOf(items, ccSectionLimit)
}

// watchlistSection: runs still queued or running, restores and verifies still running, and
// notifications still waiting to be sent; newest first.
func watchlistSection(src ccSources, scope ccScope) ccSectionJSON {
	items := []ccItemJSON{}
	for _, r := range src.recentRuns {
		if !scope.includes(r.AgentID) || (r.Status != storage.RunRunning && r.Status != storage.RunQueued) {
			continue
		}
		items = append(items, ccItemJSON{ID: "watch-run:" + r.RunID, Kind: "run_" + r.Status, Severity: sevInfo,
			Title: r.JobName + " " + runVerb(r.Status), Summary: "This run is still active.", OccurredAt: r.StartedAt, Scope: nodeScope(r.AgentID),
			Context: ccContextJSON{RunID: ptrTo(r.RunID), JobID: ptrTo(r.JobID), JobName: ptrTo(r.JobName), NodeID: nodeOf(r.AgentID),
				NodeName: nodeNameOf(r.AgentID, r.AgentName), Status: ptrTo(r.Status)},
			PrimaryAction: runAction(r.RunID)})
	}
	for _, o := range src.recentOps {
		if !scope.includes(o.AgentID) || o.Status != storage.OperationRunning {
			continue
		}
		items = append(items, ccItemJSON{ID: "watch-op:" + o.OpID, Kind: "operation_" + o.Kind + "_running", Severity: sevInfo,
			Title: o.JobName + " " + opVerb(o.Kind, o.Status), Summary: "A " + o.Kind + " of this backup is still in progress.",
			OccurredAt: o.StartedAt, Scope: nodeScope(o.AgentID),
			Context: ccContextJSON{RunID: ptrTo(o.RunID), JobID: ptrTo(o.JobID), JobName: ptrTo(o.JobName), NodeID: nodeOf(o.AgentID),
				NodeName: nodeNameOf(o.AgentID, o.AgentName), OperationID: ptrTo(o.OpID), Status: ptrTo(o.Status)},
			PrimaryAction: ccActionJSON{Label: "Open operation", Href: "/operations/" + o.OpID}})
	}
	names := map[string]*string{}
	for _, a := range src.agents {
		names[a.ID] = a.Name
	}
	for _, n := range src.pending {
		if !scope.includes(n.AgentID) {
			continue
		}
		var agentName *string
		if n.AgentID != nil {
			agentName = names[*n.AgentID]
		}
		items = append(items, ccItemJSON{ID: "watch-notification:" + n.ID, Kind: "notification_queued", Severity: sevInfo,
			Title: n.JobName + " notification pending", Summary: n.Channel + " delivery is still queued.", OccurredAt: n.UpdatedAt, Scope: nodeScope(n.AgentID),
			Context: ccContextJSON{RunID: ptrTo(n.RunID), JobID: ptrTo(n.JobID), JobName: ptrTo(n.JobName), NodeID: nodeOf(n.AgentID),
				NodeName: nodeNameOf(n.AgentID, agentName), NotificationID: ptrTo(n.ID), Channel: ptrTo(n.Channel)},
			PrimaryAction: ccActionJSON{Label: "Open queue", Href: "/notifications"}})
	}
	slices.SortStableFunc(items, func(a, b ccItemJSON) int { return cmp.Compare(b.OccurredAt, a.OccurredAt) })
	return sectionOf(items, ccWatchlistLimit)
}

// recoveryReadiness: of the live jobs in scope, how many have a successful backup and a
// successful verify, the newest of each, and what stands in the way of trusting a restore.
func recoveryReadiness(src ccSources, scope ccScope) ccReadinessJSON {
	out := ccReadinessJSON{Blockers: []ccBlockerJSON{}}
	var latestBackup, latestVerify *storage.JobRecoverySignal
	var active, backedUp, verified int64
	for i := range src.signals {
		sig := &src.signals[i]
		if !scope.includes(sig.AgentID) {
			continue
		}
		active++
		if sig.BackupAt != nil {
			backedUp++
			if latestBackup == nil || *sig.BackupAt > *latestBackup.BackupAt {
				latestBackup = sig
			}
		}
		if sig.VerifyAt != nil {
			verified++
			if latestVerify == nil || *sig.VerifyAt > *latestVerify.VerifyAt {
				latestVerify = sig
			}
		}
	}
	out.Backup = ccSignalJSON{ActiveJobs: active, CoveredJobs: backedUp}
	out.Verify = ccSignalJSON{ActiveJobs: active, CoveredJobs: verified}
	if active == 0 {
		out.State, out.Overall = sectionEmpty, sectionEmpty
		return out
	}
	if latestBackup != nil {
		out.Backup.RecentSuccessAt, out.Backup.RecentRunID = latestBackup.BackupAt, latestBackup.BackupRunID
		out.Backup.RecentJobID, out.Backup.RecentJobName = ptrTo(latestBackup.JobID), ptrTo(latestBackup.JobName)
	}
	if latestVerify != nil {
		out.Verify.RecentSuccessAt, out.Verify.RecentRunID, out.Verify.RecentOperationID = latestVerify.VerifyAt, latestVerify.VerifyRunID, latestVerify.VerifyOpID
		out.Verify.RecentJobID, out.Verify.RecentJobName = ptrTo(latestVerify.JobID), ptrTo(latestVerify.JobName)
	}
	switch {
	case latestBackup == nil:
		out.Blockers = append(out.Blockers, ccBlockerJSON{Kind: "missing_backup", Title: "No successful backup is available",
			Summary: "A restore needs at least one successful backup.", Href: "/jobs"})
	case backedUp < active:
		out.Blockers = append(out.Blockers, ccBlockerJSON{Kind: "partial_backup_coverage", Title: "Some jobs have never completed successfully",
			Summary: fmt.Sprintf("%d of %d active jobs have a successful backup.", backedUp, active), Href: "/jobs"})
	}
	switch {
	case latestVerify == nil:
		out.Blockers = append(out.Blockers, ccBlockerJSON{Kind: "missing_verification", Title: "No backup has been verified",
			Summary: "No successful verify operation is recorded for this scope.", Href: "/runs"})
	case verified < active:
		out.Blockers = append(out.Blockers, ccBlockerJSON{Kind: "partial_verification_coverage", Title: "Verification coverage is incomplete",
			Summary: fmt.Sprintf("%d of %d active jobs have a successful verify operation.", verified, active), Href: "/runs"})
	}
	if latestBackup != nil && latestVerify != nil && *latestVerify.VerifyAt < *latestBackup.BackupAt {
		out.Blockers = append(out.Blockers, ccBlockerJSON{Kind: "verify_older_than_backup", Title: "Verification is older than the latest backup",
			Summary: "A successful backup is newer than the newest successful verify.", Href: "/runs/" + deref(latestBackup.BackupRunID)})
	}
	out.State, out.Overall = sectionReady, "healthy"
	if len(out.Blockers) > 0 {
		out.State, out.Overall = sectionDegraded, sectionDegraded
	}
	return out
}

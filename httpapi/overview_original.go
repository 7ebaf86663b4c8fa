package httpapi

import (
	"cmp"
	"slices"
	"strings"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// The original's shapes of the integrations routes (integrations.rs), served beside ours. The
// original knows one target credential kind (webdav); ours count every target driver's kind.

type storageSummaryJSON struct {
	ItemsTotal   int64 `json:"items_total"`   // target credentials stored
	InUseTotal   int64 `json:"in_use_total"`  // credentials (kind, name) a live job's target names
	InvalidTotal int64 `json:"invalid_total"` // live jobs whose credential is not on their node
}

func (s storageSummaryJSON) state() string {
	switch {
	case s.ItemsTotal == 0 && s.InUseTotal == 0:
		return "empty"
	case s.InvalidTotal > 0:
		return "degraded"
	}
	return "ready"
}

type notificationsSummaryJSON struct {
	DestinationsTotal   int64 `json:"destinations_total"`
	RecentFailuresTotal int64 `json:"recent_failures_total"` // notifications that failed for good
	QueueBacklogTotal   int64 `json:"queue_backlog_total"`   // queued or being sent
}

func (s notificationsSummaryJSON) state() string {
	switch {
	case s.DestinationsTotal == 0 && s.QueueBacklogTotal == 0 && s.RecentFailuresTotal == 0:
		return "empty"
	case s.RecentFailuresTotal > 0:
		return "degraded"
	}
	return "ready"
}

type distributionSummaryJSON struct {
	CoverageTotal int64 `json:"coverage_total"` // live agents
	DriftedTotal  int64 `json:"drifted_total"`
	FailedTotal   int64 `json:"failed_total"`
	OfflineTotal  int64 `json:"offline_total"`
}

func (s distributionSummaryJSON) state() string {
	switch {
	case s.CoverageTotal == 0:
		return "empty"
	case s.DriftedTotal > 0 || s.FailedTotal > 0:
		return "degraded"
	}
	return "ready"
}

type storageUsageJSON struct {
	JobID           string  `json:"job_id"`
	JobName         string  `json:"job_name"`
	LatestRunID     *string `json:"latest_run_id"`
	LatestRunStatus *string `json:"latest_run_status"`
	LatestRunAt     *int64  `json:"latest_run_at"` // ended_at, else started_at
}

type storageHealthJSON struct {
	State           string  `json:"state"` // unused, healthy, attention, progressing, configured
	LatestRunID     *string `json:"latest_run_id"`
	LatestRunStatus *string `json:"latest_run_status"`
	LatestRunAt     *int64  `json:"latest_run_at"`
}

type storageItemJSON struct {
	Kind       string             `json:"kind"` // ours: the original has only webdav
	Name       string             `json:"name"`
	UpdatedAt  int64              `json:"updated_at"`
	UsageTotal int64              `json:"usage_total"`
	Usage      []storageUsageJSON `json:"usage"` // newest latest run first
	Health     storageHealthJSON  `json:"health"`
}

type distributionItemJSON struct {
	AgentID           string  `json:"agent_id"`
	AgentName         *string `json:"agent_name"`
	ConnectionStatus  string  `json:"connection_status"`  // online, offline
	DistributionState string  `json:"distribution_state"` // covered, drifted, failed
	PendingTasksTotal int64   `json:"pending_tasks_total"`
	LastAttemptAt     *int64  `json:"last_attempt_at"`
	LastErrorKind     *string `json:"last_error_kind"`
	LastError         *string `json:"last_error"`
}

// resolveNode checks the original's ?node_id: empty or "hub" is the Hub, else an agent that
// exists and is not revoked.
func (d *integrationsData) resolveNode(raw string) (string, error) {
	node := strings.TrimSpace(raw)
	if node == "" || node == secrets.HubNode {
		return secrets.HubNode, nil
	}
	revoked, ok := d.revoked[node]
	if !ok {
		return "", respond.BadRequest("invalid_node_id", "Node not found").Reason("not_found").Field("node_id")
	}
	if revoked {
		return "", respond.BadRequest("invalid_node_id", "Node is revoked").Reason("revoked").Field("node_id")
	}
	return node, nil
}

// storageSummary counts one node's target credentials, or every live node's when node is "".
func (d *integrationsData) storageSummary(node string) storageSummaryJSON {
	var out storageSummaryJSON
	type ref struct{ kind, name string }
	inUse := map[ref]bool{}
	for _, n := range d.storage.Nodes {
		if node != "" && n.NodeID != node {
			continue
		}
		out.ItemsTotal += int64(len(n.Credentials))
		for _, c := range n.Credentials {
			if len(c.Jobs) > 0 {
				inUse[ref{c.Kind, c.Name}] = true
			}
		}
		for _, m := range n.Missing {
			inUse[ref{m.Kind, m.Name}] = true
			out.InvalidTotal += int64(len(m.Jobs))
		}
	}
	out.InUseTotal = int64(len(inUse))
	return out
}

// storageItems lists a node's target credentials with the live jobs using each and their
// newest runs.
func (d *integrationsData) storageItems(node string) []storageItemJSON {
	items := []storageItemJSON{}
	for _, n := range d.storage.Nodes {
		if n.NodeID != node {
			continue
		}
		for _, c := range n.Credentials {
			it := storageItemJSON{Kind: c.Kind, Name: c.Name, UpdatedAt: c.UpdatedAt, UsageTotal: int64(len(c.Jobs)), Usage: []storageUsageJSON{}}
			for _, j := range c.Jobs {
				u := storageUsageJSON{JobID: j.ID, JobName: j.Name}
				if lr, ok := d.latestRuns[j.ID]; ok {
					at := lr.StartedAt
					if lr.EndedAt != nil {
						at = *lr.EndedAt
					}
					u.LatestRunID, u.LatestRunStatus, u.LatestRunAt = ptrTo(lr.RunID), ptrTo(lr.Status), ptrTo(at)
				}
				it.Usage = append(it.Usage, u)
			}
			slices.SortStableFunc(it.Usage, func(a, b storageUsageJSON) int {
				return cmp.Compare(deref(b.LatestRunAt), deref(a.LatestRunAt))
			})
			it.Health.State = "unused"
			if len(it.Usage) > 0 {
				first := it.Usage[0]
				it.Health.LatestRunID, it.Health.LatestRunStatus, it.Health.LatestRunAt = first.LatestRunID, first.LatestRunStatus, first.LatestRunAt
				it.Health.State = storageHealthState(first.LatestRunStatus)
			}
			items = append(items, it)
		}
	}
	return items
}

func storageHealthState(status *string) string {
	if status == nil {
		return "configured"
	}
	switch *status {
	case storage.RunSuccess:
		return "healthy"
	case storage.RunFailed, storage.RunRejected, storage.RunCanceled:
		return "attention"
	case storage.RunQueued, storage.RunRunning:
		return "progressing"
	}
	return "configured"
}

// distributionItems is each live agent's config sync: failed when the last sync left an error,
// drifted when the agent has not applied the snapshot the Hub wants it to have, else covered.
func (d *integrationsData) distributionItems() []distributionItemJSON {
	online := map[string]bool{}
	for _, n := range d.storage.Nodes {
		online[n.NodeID] = n.Online
	}
	items := []distributionItemJSON{}
	for _, a := range d.agents {
		it := distributionItemJSON{AgentID: a.ID, AgentName: a.Name, ConnectionStatus: "offline", DistributionState: "covered",
			PendingTasksTotal: d.openTasks[a.ID].OpenTasks, LastAttemptAt: a.LastConfigSyncAttemptAt,
			LastErrorKind: a.LastConfigSyncErrorKind, LastError: a.LastConfigSyncError}
		if online[a.ID] {
			it.ConnectionStatus = "online"
		}
		switch {
		case a.LastConfigSyncErrorKind != nil:
			it.DistributionState = "failed"
		case a.DesiredConfigSnapshotID == nil || a.AppliedConfigSnapshotID == nil || *a.AppliedConfigSnapshotID != *a.DesiredConfigSnapshotID:
			it.DistributionState = "drifted"
		}
		items = append(items, it)
	}
	return items
}

func summarizeDistribution(items []distributionItemJSON) distributionSummaryJSON {
	out := distributionSummaryJSON{CoverageTotal: int64(len(items))}
	for _, it := range items {
		switch it.DistributionState {
		case "drifted":
			out.DriftedTotal++
		case "failed":
			out.FailedTotal++
		}
		if it.ConnectionStatus == "offline" {
			out.OfflineTotal++
		}
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// The command center lists what needs someone's attention now; the integrations pages show
// which credentials each node holds and which jobs and channels use them. Both are read-only
// aggregates for viewers, read in one transaction, and never carry a secret's value.

const (
	commandCenterDefaultDays = 7
	commandCenterMaxDays     = 90
	commandCenterListLimit   = 50
	// A queued cleanup task younger than this is not yet a backlog.
	cleanupBacklogAge = 24 * time.Hour
)

// Attention item kinds and severities.
const (
	attnFailedRun          = "failed_run"
	attnStaleAgent         = "stale_agent"
	attnNotificationFailed = "notification_failed"
	attnVerifyFailed       = "verify_failed"
	attnCleanupFailed      = "cleanup_failed"
	attnCleanupPending     = "cleanup_pending"

	sevCritical = "critical"
	sevWarning  = "warning"
	sevInfo     = "info"
)

var severityRank = map[string]int{sevCritical: 0, sevWarning: 1, sevInfo: 2}

func (s *Server) overviewRoutes(r chi.Router) {
	r.Get("/command-center", s.commandCenter)
	r.Get("/integrations", s.integrationsSummary)
	r.Get("/integrations/storage", s.integrationsStorage)
	r.Get("/integrations/distribution", s.integrationsDistribution)
}

// attentionItem is one thing to look at. Title is an English sentence for logs and API users;
// the UI words it from kind and the object fields.
type attentionItem struct {
	ID             string  `json:"id"` // stable within a kind: kind + ":" + object id
	Kind           string  `json:"kind"`
	Severity       string  `json:"severity"`
	Title          string  `json:"title"`
	Detail         *string `json:"detail"`
	At             int64   `json:"at"` // unix seconds: when it happened (or the oldest of a group)
	Link           string  `json:"link"`
	JobID          *string `json:"job_id,omitempty"`
	JobName        *string `json:"job_name,omitempty"`
	RunID          *string `json:"run_id,omitempty"`
	NodeID         *string `json:"node_id,omitempty"`
	AgentID        *string `json:"agent_id,omitempty"`
	AgentName      *string `json:"agent_name,omitempty"`
	NotificationID *string `json:"notification_id,omitempty"`
	Channel        *string `json:"channel,omitempty"`
	Destination    *string `json:"destination,omitempty"`
	OpID           *string `json:"op_id,omitempty"`
	Count          *int64  `json:"count,omitempty"`
}

type attentionCounts struct {
	Total    int            `json:"total"`
	Critical int            `json:"critical"`
	Warning  int            `json:"warning"`
	Info     int            `json:"info"`
	ByKind   map[string]int `json:"by_kind"`
}

type commandCenterJSON struct {
	GeneratedAt int64           `json:"generated_at"`
	WindowDays  int             `json:"window_days"`
	Since       int64           `json:"since"`
	Counts      attentionCounts `json:"counts"`
	Items       []attentionItem `json:"items"` // most severe first, then newest
	// The original's CommandCenterResponse, for ?scope and ?range.
	Scope             ccScopeJSON     `json:"scope"`
	Range             ccRangeJSON     `json:"range"`
	Attention         ccSectionJSON   `json:"attention"`
	CriticalActivity  ccSectionJSON   `json:"critical_activity"`
	RecoveryReadiness ccReadinessJSON `json:"recovery_readiness"`
	Watchlist         ccSectionJSON   `json:"watchlist"`
}

// commandCenter answers GET /api/command-center?days=N (1..90, default 7) for our items and
// ?scope=…&range=… for the original's sections.
func (s *Server) commandCenter(w http.ResponseWriter, r *http.Request) {
	scope, rng, err := parseCCQuery(r, s.now())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	days, err := readDays(r.URL.Query(), commandCenterDefaultDays, commandCenterMaxDays)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	now := s.now()
	since := now.Add(-time.Duration(days) * 24 * time.Hour).Unix()
	out := commandCenterJSON{GeneratedAt: now.Unix(), WindowDays: days, Since: since, Items: []attentionItem{},
		Scope: ccScopeJSON{Requested: scope.String(), Effective: scope.String()}, Range: rng}
	var src ccSources
	err = s.db.Read(r.Context(), func(q storage.Q) error {
		items, err := s.attentionItems(r.Context(), q, now, since)
		out.Items = items
		if err != nil {
			return err
		}
		src, err = readCCSources(r.Context(), q, rng.From)
		return err
	})
	if err != nil {
		respond.Error(w, r, fmt.Errorf("read command center: %w", err))
		return
	}
	out.Attention = s.attentionSection(src, scope, now.Unix())
	out.CriticalActivity = criticalActivitySection(src, scope)
	out.RecoveryReadiness = recoveryReadiness(src, scope)
	out.Watchlist = watchlistSection(src, scope)
	slices.SortStableFunc(out.Items, func(a, b attentionItem) int {
		return cmp.Or(cmp.Compare(severityRank[a.Severity], severityRank[b.Severity]), cmp.Compare(b.At, a.At), cmp.Compare(a.ID, b.ID))
	})
	out.Counts.ByKind = map[string]int{}
	for _, it := range out.Items {
		out.Counts.Total++
		out.Counts.ByKind[it.Kind]++
		switch it.Severity {
		case sevCritical:
			out.Counts.Critical++
		case sevWarning:
			out.Counts.Warning++
		default:
			out.Counts.Info++
		}
	}
	respond.JSON(w, http.StatusOK, out)
}

func (s *Server) attentionItems(ctx context.Context, q storage.Q, now time.Time, since int64) ([]attentionItem, error) {
	items := []attentionItem{}
	runs, err := q.LatestFailedRuns(ctx, since, commandCenterListLimit)
	if err != nil {
		return nil, err
	}
	for _, f := range runs {
		at := f.StartedAt
		if f.EndedAt != nil {
			at = *f.EndedAt
		}
		node := secrets.HubNode
		if f.AgentID != nil {
			node = *f.AgentID
		}
		items = append(items, attentionItem{ID: attnFailedRun + ":" + f.JobID, Kind: attnFailedRun, Severity: sevCritical,
			Title: fmt.Sprintf("The latest run of job %s failed", f.JobName), Detail: f.Error, At: at, Link: "/runs/" + f.RunID,
			JobID: ptrTo(f.JobID), JobName: ptrTo(f.JobName), RunID: ptrTo(f.RunID), NodeID: ptrTo(node)})
	}

	agents, err := q.ListAgents(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range agents {
		v := s.viewAgent(a, now.Unix())
		if v.Revoked || v.Online {
			continue
		}
		at := a.CreatedAt
		if a.LastSeenAt != nil {
			at = *a.LastSeenAt
		}
		name := a.ID
		if a.Name != nil && *a.Name != "" {
			name = *a.Name
		}
		items = append(items, attentionItem{ID: attnStaleAgent + ":" + a.ID, Kind: attnStaleAgent, Severity: sevWarning,
			Title: fmt.Sprintf("Agent %s is offline", name), At: at, Link: "/agents",
			AgentID: ptrTo(a.ID), AgentName: ptrTo(name), NodeID: ptrTo(a.ID)})
	}

	notes, err := q.RecentFailedNotifications(ctx, since, commandCenterListLimit)
	if err != nil {
		return nil, err
	}
	for _, n := range notes {
		items = append(items, attentionItem{ID: attnNotificationFailed + ":" + n.ID, Kind: attnNotificationFailed, Severity: sevWarning,
			Title:  fmt.Sprintf("A %s notification to %s about job %s failed", n.Channel, n.Destination, n.JobName),
			Detail: n.LastError, At: n.UpdatedAt, Link: "/notifications",
			NotificationID: ptrTo(n.ID), RunID: ptrTo(n.RunID), JobID: ptrTo(n.JobID), JobName: ptrTo(n.JobName),
			Channel: ptrTo(n.Channel), Destination: ptrTo(n.Destination)})
	}

	verifs, err := q.FailedVerifications(ctx, commandCenterListLimit)
	if err != nil {
		return nil, err
	}
	for _, v := range verifs {
		link := "/jobs/" + v.JobID
		if v.OpID != nil {
			link = "/operations/" + *v.OpID
		}
		var at int64
		if v.VerifiedAt != nil {
			at = *v.VerifiedAt
		}
		node := secrets.HubNode
		if v.AgentID != nil {
			node = *v.AgentID
		}
		items = append(items, attentionItem{ID: attnVerifyFailed + ":" + v.JobID, Kind: attnVerifyFailed, Severity: sevCritical,
			Title: fmt.Sprintf("The latest snapshot of job %s failed verification", v.JobName), At: at, Link: link,
			JobID: ptrTo(v.JobID), JobName: ptrTo(v.JobName), OpID: v.OpID, NodeID: ptrTo(node)})
	}

	// A task queued moments ago is the queue doing its work, not a backlog.
	backlog, err := q.CleanupBacklog(ctx, now.Add(-cleanupBacklogAge).Unix())
	if err != nil {
		return nil, err
	}
	var failed, pending storage.TaskBacklog
	for _, b := range backlog {
		g := &failed
		if b.Status == storage.TaskQueued || b.Status == storage.TaskRunning {
			g = &pending
		}
		if g.Count == 0 || b.OldestCreatedAt < g.OldestCreatedAt {
			g.OldestCreatedAt = b.OldestCreatedAt
		}
		g.Count += b.Count
	}
	if failed.Count > 0 {
		items = append(items, attentionItem{ID: attnCleanupFailed, Kind: attnCleanupFailed, Severity: sevWarning,
			Title: fmt.Sprintf("%d incomplete-run cleanup tasks failed or are blocked", failed.Count),
			At:    failed.OldestCreatedAt, Link: "/maintenance", Count: ptrTo(failed.Count)})
	}
	if pending.Count > 0 {
		items = append(items, attentionItem{ID: attnCleanupPending, Kind: attnCleanupPending, Severity: sevInfo,
			Title: fmt.Sprintf("%d incomplete-run cleanup tasks have waited over a day", pending.Count),
			At:    pending.OldestCreatedAt, Link: "/maintenance", Count: ptrTo(pending.Count)})
	}
	return items, nil
}

// Integrations.

type credentialJob struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type nodeCredential struct {
	Kind      string          `json:"kind"`
	Name      string          `json:"name"`
	UpdatedAt int64           `json:"updated_at"`
	Jobs      []credentialJob `json:"jobs"` // the node's live jobs whose target uses it
}

type missingCredential struct {
	Kind string          `json:"kind"`
	Name string          `json:"name"`
	Jobs []credentialJob `json:"jobs"`
}

type storageNode struct {
	NodeID      string              `json:"node_id"` // "hub" or an agent id
	Name        string              `json:"name"`
	IsHub       bool                `json:"is_hub"`
	Online      bool                `json:"online"`
	Credentials []nodeCredential    `json:"credentials"`
	Missing     []missingCredential `json:"missing"` // referenced by a job of the node, not stored on it
}

type integrationsStorageJSON struct {
	SecretKinds []string      `json:"secret_kinds"`
	Nodes       []storageNode `json:"nodes"` // the Hub first, then agents by name
	// The original's StorageDetailsResponse, for the node asked for (?node_id, the Hub by default).
	NodeID  string             `json:"node_id"`
	Summary storageSummaryJSON `json:"summary"`
	Items   []storageItemJSON  `json:"items"`
}

type distributedCredential struct {
	Kind          string   `json:"kind"`
	Name          string   `json:"name"`
	OnHub         bool     `json:"on_hub"`
	Agents        []string `json:"agents"`         // agent ids holding it
	MissingAgents []string `json:"missing_agents"` // live agents whose jobs use it without holding it
}

type distributionAgent struct {
	AgentID     string   `json:"agent_id"`
	Name        string   `json:"name"`
	Online      bool     `json:"online"`
	Credentials []string `json:"credentials"` // "kind/name"
}

type channelDestination struct {
	Name      string `json:"name"`
	Enabled   bool   `json:"enabled"`
	UpdatedAt int64  `json:"updated_at"`
}

type notificationChannel struct {
	Channel      string               `json:"channel"`
	SecretKind   string               `json:"secret_kind"`
	Destinations []channelDestination `json:"destinations"`
}

type integrationsDistributionJSON struct {
	SecretKinds   []string                `json:"secret_kinds"`
	Credentials   []distributedCredential `json:"credentials"`
	Agents        []distributionAgent     `json:"agents"`
	Notifications []notificationChannel   `json:"notifications"`
	// The original's DistributionDetailsResponse: each live agent's config sync.
	Summary distributionSummaryJSON `json:"summary"`
	Items   []distributionItemJSON  `json:"items"`
}

type integrationsSummaryJSON struct {
	Storage struct {
		SecretKinds      []string `json:"secret_kinds"`
		Nodes            int      `json:"nodes"`
		Credentials      int      `json:"credentials"`
		JobsUsingSecrets int      `json:"jobs_using_credentials"`
		Missing          int      `json:"missing"`
		// The original's {state, summary} of each domain.
		State   string             `json:"state"`
		Summary storageSummaryJSON `json:"summary"`
	} `json:"storage"`
	Distribution struct {
		Agents                int                     `json:"agents"`
		AgentsWithCredentials int                     `json:"agents_with_credentials"`
		State                 string                  `json:"state"`
		Summary               distributionSummaryJSON `json:"summary"`
	} `json:"distribution"`
	Notifications struct {
		Channels            int                      `json:"channels"`
		Destinations        int                      `json:"destinations"`
		EnabledDestinations int                      `json:"enabled_destinations"`
		Unconfigured        []string                 `json:"unconfigured_channels"`
		State               string                   `json:"state"`
		Summary             notificationsSummaryJSON `json:"summary"`
	} `json:"notifications"`
}

type integrationsData struct {
	storage      integrationsStorageJSON
	distribution integrationsDistributionJSON
	// What the original's shapes need besides.
	agents       []storage.Agent // not revoked
	revoked      map[string]bool // every agent id, true when revoked
	latestRuns   map[string]storage.LatestRun
	openTasks    map[string]storage.FleetCounts
	notesFailed  int64
	notesBacklog int64
	now          int64
}

func (s *Server) integrationsSummary(w http.ResponseWriter, r *http.Request) {
	d, err := s.readIntegrations(r.Context())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	var out integrationsSummaryJSON
	out.Storage.SecretKinds = d.storage.SecretKinds
	out.Storage.Nodes = len(d.storage.Nodes)
	jobs := map[string]bool{}
	for _, n := range d.storage.Nodes {
		out.Storage.Credentials += len(n.Credentials)
		out.Storage.Missing += len(n.Missing)
		for _, c := range n.Credentials {
			for _, j := range c.Jobs {
				jobs[j.ID] = true
			}
		}
		for _, m := range n.Missing {
			for _, j := range m.Jobs {
				jobs[j.ID] = true
			}
		}
	}
	out.Storage.JobsUsingSecrets = len(jobs)
	out.Distribution.Agents = len(d.distribution.Agents)
	for _, a := range d.distribution.Agents {
		if len(a.Credentials) > 0 {
			out.Distribution.AgentsWithCredentials++
		}
	}
	out.Notifications.Channels = len(d.distribution.Notifications)
	out.Notifications.Unconfigured = []string{}
	for _, c := range d.distribution.Notifications {
		out.Notifications.Destinations += len(c.Destinations)
		for _, dst := range c.Destinations {
			if dst.Enabled {
				out.Notifications.EnabledDestinations++
			}
		}
		if len(c.Destinations) == 0 {
			out.Notifications.Unconfigured = append(out.Notifications.Unconfigured, c.Channel)
		}
	}
	out.Storage.Summary = d.storageSummary("")
	out.Storage.State = out.Storage.Summary.state()
	out.Notifications.Summary = notificationsSummaryJSON{DestinationsTotal: int64(out.Notifications.Destinations),
		RecentFailuresTotal: d.notesFailed, QueueBacklogTotal: d.notesBacklog}
	out.Notifications.State = out.Notifications.Summary.state()
	out.Distribution.Summary = summarizeDistribution(d.distributionItems())
	out.Distribution.State = out.Distribution.Summary.state()
	respond.JSON(w, http.StatusOK, out)
}

// integrationsStorage answers GET /api/integrations/storage?node_id=… (the node of the
// original's fields: the Hub by default; ours list every node whatever node_id says).
func (s *Server) integrationsStorage(w http.ResponseWriter, r *http.Request) {
	d, err := s.readIntegrations(r.Context())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	node, err := d.resolveNode(r.URL.Query().Get("node_id"))
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out := d.storage
	out.NodeID = node
	out.Summary = d.storageSummary(node)
	out.Items = d.storageItems(node)
	respond.JSON(w, http.StatusOK, out)
}

func (s *Server) integrationsDistribution(w http.ResponseWriter, r *http.Request) {
	d, err := s.readIntegrations(r.Context())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out := d.distribution
	out.Items = d.distributionItems()
	out.Summary = summarizeDistribution(out.Items)
	respond.JSON(w, http.StatusOK, out)
}

// readIntegrations reads the target credentials of every node (names only), the live jobs'
// targets and the notification destinations in one transaction. The kinds and channels come
// from the driver lists, so a new target or channel shows up here without a change.
func (s *Server) readIntegrations(ctx context.Context) (*integrationsData, error) {
	kinds := all.Registry.SecretKinds()
	kindsJSON, err := json.Marshal(kinds)
	if err != nil {
		return nil, fmt.Errorf("encode secret kinds: %w", err)
	}
	now := s.now().Unix()
	var (
		agents []storage.Agent
		stored []storage.NodeSecret
		jobs   []storage.JobTarget
		dests  []storage.NotificationDestination
	)
	d := &integrationsData{now: now, revoked: map[string]bool{}}
	err = s.db.Read(ctx, func(q storage.Q) error {
		var err error
		if agents, err = q.ListAgents(ctx); err != nil {
			return err
		}
		if d.latestRuns, err = q.LiveJobLatestRuns(ctx); err != nil {
			return err
		}
		if d.openTasks, err = q.AgentFleetCounts(ctx); err != nil {
			return err
		}
		if d.notesFailed, err = q.CountNotificationQueue(ctx, storage.NotificationQueueFilter{Node: secrets.HubNode,
			Kinds: notify.StorageKinds(), Statuses: []string{storage.NotificationFailed}}); err != nil {
			return err
		}
		if d.notesBacklog, err = q.CountNotificationQueue(ctx, storage.NotificationQueueFilter{Node: secrets.HubNode,
			Kinds: notify.StorageKinds(), Statuses: []string{storage.NotificationQueued, storage.NotificationSending}}); err != nil {
			return err
		}
		if stored, err = q.ListSecretsOfKinds(ctx, string(kindsJSON)); err != nil {
			return err
		}
		if jobs, err = q.ListLiveJobTargets(ctx); err != nil {
			return err
		}
		dests, err = q.ListNotificationDestinations(ctx, secrets.HubNode, notify.StorageKinds())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read integrations: %w", err)
	}

	// Nodes: the Hub, then every agent that is not revoked.
	d.storage = integrationsStorageJSON{SecretKinds: kinds, Nodes: []storageNode{{NodeID: secrets.HubNode, Name: "Hub", IsHub: true, Online: true}}}
	slices.SortFunc(agents, func(a, b storage.Agent) int {
		return cmp.Or(cmp.Compare(agentName(a), agentName(b)), cmp.Compare(a.ID, b.ID))
	})
	for _, a := range agents {
		d.revoked[a.ID] = a.RevokedAt != nil
		if a.RevokedAt != nil {
			continue
		}
		d.agents = append(d.agents, a)
		v := s.viewAgent(a, now)
		d.storage.Nodes = append(d.storage.Nodes, storageNode{NodeID: a.ID, Name: agentName(a), Online: v.Online})
	}
	nodeIdx := map[string]int{}
	for i := range d.storage.Nodes {
		nodeIdx[d.storage.Nodes[i].NodeID] = i
		d.storage.Nodes[i].Credentials = []nodeCredential{}
		d.storage.Nodes[i].Missing = []missingCredential{}
	}
	type key struct{ node, kind, name string }
	credIdx := map[key]int{}
	for _, sec := range stored {
		i, ok := nodeIdx[sec.NodeID]
		if !ok {
			continue // a revoked agent's leftovers
		}
		n := &d.storage.Nodes[i]
		credIdx[key{sec.NodeID, sec.Kind, sec.Name}] = len(n.Credentials)
		n.Credentials = append(n.Credentials, nodeCredential{Kind: sec.Kind, Name: sec.Name, UpdatedAt: sec.UpdatedAt, Jobs: []credentialJob{}})
	}
	missIdx := map[key]int{}
	for _, j := range jobs {
		spec, err := jobspec.Parse([]byte(j.SpecJSON))
		if err != nil {
			continue // a spec this build cannot read uses nothing we can name
		}
		drv, ok := spec.Target.Driver()
		if !ok || drv.SecretKind() == "" || spec.Target.SecretName() == "" {
			continue
		}
		node := secrets.HubNode
		if j.AgentID != nil {
			node = *j.AgentID
		}
		i, ok := nodeIdx[node]
		if !ok {
			continue // a job of a revoked agent cannot run anyway
		}
		n := &d.storage.Nodes[i]
		k := key{node, drv.SecretKind(), spec.Target.SecretName()}
		cj := credentialJob{ID: j.ID, Name: j.Name}
		if ci, ok := credIdx[k]; ok {
			n.Credentials[ci].Jobs = append(n.Credentials[ci].Jobs, cj)
			continue
		}
		mi, ok := missIdx[k]
		if !ok {
			mi = len(n.Missing)
			missIdx[k] = mi
			n.Missing = append(n.Missing, missingCredential{Kind: k.kind, Name: k.name, Jobs: []credentialJob{}})
		}
		n.Missing[mi].Jobs = append(n.Missing[mi].Jobs, cj)
	}

	// Distribution: the same facts per credential and per agent.
	dist := &d.distribution
	dist.SecretKinds = kinds
	dist.Credentials = []distributedCredential{}
	dist.Agents = []distributionAgent{}
	type ckey struct{ kind, name string }
	dIdx := map[ckey]int{}
	cred := func(kind, name string) *distributedCredential {
		k := ckey{kind, name}
		i, ok := dIdx[k]
		if !ok {
			i = len(dist.Credentials)
			dIdx[k] = i
			dist.Credentials = append(dist.Credentials, distributedCredential{Kind: kind, Name: name, Agents: []string{}, MissingAgents: []string{}})
		}
		return &dist.Credentials[i]
	}
	for _, n := range d.storage.Nodes {
		var have []string
		for _, c := range n.Credentials {
			dc := cred(c.Kind, c.Name)
			if n.IsHub {
				dc.OnHub = true
			} else {
				dc.Agents = append(dc.Agents, n.NodeID)
			}
			have = append(have, c.Kind+"/"+c.Name)
		}
		for _, m := range n.Missing {
			dc := cred(m.Kind, m.Name)
			if !n.IsHub {
				dc.MissingAgents = append(dc.MissingAgents, n.NodeID)
			}
		}
		if !n.IsHub {
			if have == nil {
				have = []string{}
			}
			dist.Agents = append(dist.Agents, distributionAgent{AgentID: n.NodeID, Name: n.Name, Online: n.Online, Credentials: have})
		}
	}
	slices.SortFunc(dist.Credentials, func(a, b distributedCredential) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})

	dist.Notifications = []notificationChannel{}
	byChannel := map[string]int{}
	for _, c := range notify.Channels() {
		byChannel[c.Name()] = len(dist.Notifications)
		dist.Notifications = append(dist.Notifications, notificationChannel{Channel: c.Name(), SecretKind: c.SecretKind(), Destinations: []channelDestination{}})
	}
	for _, dst := range dests {
		if i, ok := byChannel[dst.Channel]; ok {
			dist.Notifications[i].Destinations = append(dist.Notifications[i].Destinations,
				channelDestination{Name: dst.Name, Enabled: dst.Enabled, UpdatedAt: dst.UpdatedAt})
		}
	}
	return d, nil
}

func agentName(a storage.Agent) string {
	if a.Name != nil && *a.Name != "" {
		return *a.Name
	}
	return a.ID
}

package httpapi

import (
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// Fleet detail limits, as the original: the newest runs and the most recently changed jobs.
const (
	fleetRecentRuns  = 10
	fleetRelatedJobs = 50
)

// fleetRoutes serve the fleet page: the agents list with what an operator checks first (health,
// version, jobs, config drift) and one agent's detail, each from one read.
func (s *Server) fleetRoutes(r chi.Router) {
	r.Get("/fleet", s.listFleet)
	r.Get("/fleet/{id}", s.getFleetAgent)
}

type fleetSummary struct {
	Total   int `json:"total"`
	Online  int `json:"online"`
	Offline int `json:"offline"`
	Revoked int `json:"revoked"`
	Drifted int `json:"drifted"` // online and not synced (pending or error)
}

type fleetOnboarding struct {
	PublicBaseURL          *string `json:"public_base_url"`
	CommandGenerationReady bool    `json:"command_generation_ready"`
}

type fleetConfigSync struct {
	State         string  `json:"state"` // synced | pending | error | offline
	LastErrorKind *string `json:"last_error_kind"`
	LastError     *string `json:"last_error"`
	LastAttemptAt *int64  `json:"last_attempt_at"`
}

type fleetListItem struct {
	ID                string          `json:"id"`
	Name              *string         `json:"name"`
	Status            string          `json:"status"` // online | offline | revoked
	LastSeenAt        *int64          `json:"last_seen_at"`
	Labels            []string        `json:"labels"`
	ConfigSync        fleetConfigSync `json:"config_sync"`
	AssignedJobsTotal int64           `json:"assigned_jobs_total"`
	PendingTasksTotal int64           `json:"pending_tasks_total"`
	// Go extensions: the version the agent reported in its last hello (null before the first)
	// and whether its socket is connected to this Hub now.
	Version   *string `json:"version"`
	Connected bool    `json:"connected"`
}

type fleetListJSON struct {
	Summary    fleetSummary    `json:"summary"`
	Onboarding fleetOnboarding `json:"onboarding"`
	Items      []fleetListItem `json:"items"`
	Page       int             `json:"page"`
	PageSize   int             `json:"page_size"`
	Total      int             `json:"total"`
}

// agentHello is what the fleet shows of an agent's last hello. The hello came from the agent and
// may be anything: a part that does not parse is left out, never an error.
type agentHello struct {
	info protocol.AgentInfo
	caps protocol.Capabilities
	ok   bool
}

func parseHello(raw *string) agentHello {
	var h protocol.Hello
	if raw == nil || json.Unmarshal([]byte(*raw), &h) != nil {
		return agentHello{}
	}
	return agentHello{info: h.Info, caps: h.Capabilities, ok: true}
}

func (h agentHello) version() *string {
	if !h.ok || h.info.Version == "" {
		return nil
	}
	return &h.info.Version
}

func fleetStatus(v agentView) string {
	switch {
	case v.Revoked:
		return "revoked"
	case v.Online:
		return "online"
	}
	return "offline"
}

// listFleet answers GET /api/fleet with the agents list's filters (status, labels[],
// labels_mode, q) and paging; the summary counts the filtered agents.
func (s *Server) listFleet(w http.ResponseWriter, r *http.Request) {
	pg, err := readPage(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	f, err := readAgentFilter(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	var agents []storage.Agent
	var counts map[string]storage.FleetCounts
	err = s.db.Read(r.Context(), func(q storage.Q) error {
		if agents, err = q.ListAgents(r.Context()); err != nil {
			return err
		}
		counts, err = q.AgentFleetCounts(r.Context())
		return err
	})
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	now := s.now().Unix()
	out := fleetListJSON{Items: []fleetListItem{}}
	// Newest enrolled first, as the original.
	slices.SortStableFunc(agents, func(a, b storage.Agent) int {
		return cmp.Or(cmp.Compare(b.CreatedAt, a.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	for _, a := range agents {
		v := s.viewAgent(a, now)
		if !f.match(a, v) {
			continue
		}
		item := fleetListItem{ID: a.ID, Name: a.Name, Status: fleetStatus(v), LastSeenAt: a.LastSeenAt, Labels: v.Labels,
			ConfigSync: fleetConfigSync{State: v.ConfigSyncStatus, LastErrorKind: a.LastConfigSyncErrorKind,
				LastError: a.LastConfigSyncError, LastAttemptAt: a.LastConfigSyncAttemptAt},
			AssignedJobsTotal: counts[a.ID].Jobs, PendingTasksTotal: counts[a.ID].OpenTasks,
			Version: parseHello(a.CapabilitiesJSON).version(), Connected: v.Connected}
		out.Summary.Total++
		switch item.Status {
		case "revoked":
			out.Summary.Revoked++
		case "online":
			out.Summary.Online++
			if v.ConfigSyncStatus != "synced" {
				out.Summary.Drifted++
			}
		default:
			out.Summary.Offline++
		}
		out.Items = append(out.Items, item)
	}
	if s.cfg.PublicBaseURL != "" {
		u := s.cfg.PublicBaseURL
		out.Onboarding = fleetOnboarding{PublicBaseURL: &u, CommandGenerationReady: true}
	}
	out.Total = len(out.Items)
	out.Page, out.PageSize = 1, len(out.Items)
	if pg.paged {
		start := min(pg.offset(), len(out.Items))
		out.Items = out.Items[start:min(start+pg.size, len(out.Items))]
		out.Page, out.PageSize = pg.page, pg.size
	}
	respond.JSON(w, http.StatusOK, out)
}

type fleetAgentInfo struct {
	ID         string   `json:"id"`
	Name       *string  `json:"name"`
	Status     string   `json:"status"`
	CreatedAt  int64    `json:"created_at"`
	LastSeenAt *int64   `json:"last_seen_at"`
	Labels     []string `json:"labels"`
	// Go extensions: what the agent's last hello reported, and its live socket and counts.
	Version           *string  `json:"version"`
	OS                *string  `json:"os"`
	Arch              *string  `json:"arch"`
	BackupKinds       []string `json:"backup_kinds"`  // the hello's capabilities.backup
	ControlKinds      []string `json:"control_kinds"` // the hello's capabilities.control
	Connected         bool     `json:"connected"`
	RevokedAt         *int64   `json:"revoked_at"`
	AssignedJobsTotal int64    `json:"assigned_jobs_total"`
	PendingTasksTotal int64    `json:"pending_tasks_total"`
}

type fleetAgentSync struct {
	DesiredSnapshotID *string `json:"desired_snapshot_id"`
	DesiredSnapshotAt *int64  `json:"desired_snapshot_at"`
	AppliedSnapshotID *string `json:"applied_snapshot_id"`
	AppliedSnapshotAt *int64  `json:"applied_snapshot_at"`
	State             string  `json:"state"`
	LastErrorKind     *string `json:"last_error_kind"`
	LastError         *string `json:"last_error"`
	LastAttemptAt     *int64  `json:"last_attempt_at"`
}

type fleetActivity struct {
	RunID     string  `json:"run_id"`
	JobID     string  `json:"job_id"`
	JobName   string  `json:"job_name"`
	Status    string  `json:"status"`
	StartedAt int64   `json:"started_at"`
	EndedAt   *int64  `json:"ended_at"`
	Error     *string `json:"error"` // Go extension
}

type fleetRelatedJob struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	Schedule  *string `json:"schedule"`
	UpdatedAt int64   `json:"updated_at"`
}

// fleetActions says which agent actions apply to this agent's state (the original's
// "capabilities"); whether the caller's role may take them is the routes' business.
type fleetActions struct {
	CanRotateKey     bool `json:"can_rotate_key"`
	CanRevoke        bool `json:"can_revoke"`
	CanSyncNow       bool `json:"can_sync_now"`
	CanManageStorage bool `json:"can_manage_storage"`
}

type fleetAgentJSON struct {
	Agent          fleetAgentInfo    `json:"agent"`
	Sync           fleetAgentSync    `json:"sync"`
	RecentActivity []fleetActivity   `json:"recent_activity"`
	RelatedJobs    []fleetRelatedJob `json:"related_jobs"`
	Capabilities   fleetActions      `json:"capabilities"`
}

// getFleetAgent answers GET /api/fleet/{id}: one agent with its sync state, newest runs, jobs and
// the actions its state allows.
func (s *Server) getFleetAgent(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	ctx := r.Context()
	var (
		a      storage.Agent
		counts storage.FleetCounts
		runs   []storage.RunSummary
		jobs   []storage.Job
	)
	err := s.db.Read(ctx, func(q storage.Q) error {
		var err error
		if a, err = q.GetAgent(ctx, id); err != nil {
			return err
		}
		if counts, err = q.AgentCounts(ctx, id); err != nil {
			return err
		}
		if runs, err = q.AgentRecentRuns(ctx, id, fleetRecentRuns); err != nil {
			return err
		}
		jobs, err = q.ListAgentJobs(ctx, id)
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		respond.Error(w, r, respond.NotFound("agent_not_found", "no such agent"))
		return
	}
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	v := s.viewAgent(a, s.now().Unix())
	hello := parseHello(a.CapabilitiesJSON)
	info := fleetAgentInfo{ID: a.ID, Name: a.Name, Status: fleetStatus(v), CreatedAt: a.CreatedAt, LastSeenAt: a.LastSeenAt,
		Labels: v.Labels, Version: hello.version(), BackupKinds: []string{}, ControlKinds: []string{},
		Connected: v.Connected, RevokedAt: a.RevokedAt,
		AssignedJobsTotal: counts.Jobs, PendingTasksTotal: counts.OpenTasks}
	if hello.ok {
		if hello.info.OS != "" {
			info.OS = &hello.info.OS
		}
		if hello.info.Arch != "" {
			info.Arch = &hello.info.Arch
		}
		info.BackupKinds = append(info.BackupKinds, hello.caps.Backup...)
		info.ControlKinds = append(info.ControlKinds, hello.caps.Control...)
	}
	out := fleetAgentJSON{
		Agent: info,
		Sync: fleetAgentSync{DesiredSnapshotID: a.DesiredConfigSnapshotID, DesiredSnapshotAt: a.DesiredConfigSnapshotAt,
			AppliedSnapshotID: a.AppliedConfigSnapshotID, AppliedSnapshotAt: a.AppliedConfigSnapshotAt, State: v.ConfigSyncStatus,
			LastErrorKind: a.LastConfigSyncErrorKind, LastError: a.LastConfigSyncError, LastAttemptAt: a.LastConfigSyncAttemptAt},
		RecentActivity: make([]fleetActivity, 0, len(runs)),
		RelatedJobs:    make([]fleetRelatedJob, 0, min(len(jobs), fleetRelatedJobs)),
		Capabilities:   fleetActions{CanRotateKey: !v.Revoked, CanRevoke: !v.Revoked, CanSyncNow: !v.Revoked, CanManageStorage: true},
	}
	for _, run := range runs {
		out.RecentActivity = append(out.RecentActivity, fleetActivity{RunID: run.ID, JobID: run.JobID, JobName: run.JobName,
			Status: run.Status, StartedAt: run.StartedAt, EndedAt: run.EndedAt, Error: run.Error})
	}
	slices.SortStableFunc(jobs, func(x, y storage.Job) int {
		return cmp.Or(cmp.Compare(y.UpdatedAt, x.UpdatedAt), cmp.Compare(x.ID, y.ID))
	})
	for _, j := range jobs[:min(len(jobs), fleetRelatedJobs)] {
		out.RelatedJobs = append(out.RelatedJobs, fleetRelatedJob{ID: j.ID, Name: j.Name, Schedule: j.Schedule, UpdatedAt: j.UpdatedAt})
	}
	respond.JSON(w, http.StatusOK, out)
}

package httpapi

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// Dashboard limits: how far back the chart may reach and how many items each list carries (the
// *_total fields count them all).
const (
	dashboardDefaultDays = 14
	dashboardMaxDays     = 90
	dashboardListLimit   = 10
)

// dashboardRoutes serve the overview the dashboard shows, aggregated here in one read instead
// of the UI fetching every job's runs and snapshots (which fanned out and saw only each job's
// newest runs).
func (s *Server) dashboardRoutes(r chi.Router) {
	r.Get("/dashboard/overview", s.dashboardOverview)
}

type dashboardDay struct {
	Day     string `json:"day"`   // YYYY-MM-DD in the Hub's time zone
	Start   int64  `json:"start"` // the day's first instant, unix seconds
	Success int64  `json:"success"`
	Failed  int64  `json:"failed"`
	Bytes   int64  `json:"bytes"` // stored size of the snapshots the day's runs left
}

type dashboardRun struct {
	ID        string  `json:"id"`
	JobID     string  `json:"job_id"`
	JobName   string  `json:"job_name"`
	Status    string  `json:"status"`
	StartedAt int64   `json:"started_at"`
	EndedAt   *int64  `json:"ended_at"`
	Error     *string `json:"error"`
	// The original's names: run_id (= id), where it ran ("hub" or the agent id), and whether an
	// agent ran it offline.
	RunID           string `json:"run_id"`
	NodeID          string `json:"node_id"`
	ExecutedOffline bool   `json:"executed_offline"`
}

// dashboardStats and dashboardTrendDay are the original's overview (stats, trend_7d), served
// next to ours: its 24-hour and 7-day windows are fixed and in UTC whatever the Hub's zone.
type dashboardStats struct {
	Agents struct {
		Total   int `json:"total"`
		Active  int `json:"active"` // not revoked
		Online  int `json:"online"`
		Offline int `json:"offline"`
		Revoked int `json:"revoked"`
	} `json:"agents"`
	Jobs struct {
		Active   int64 `json:"active"`
		Archived int64 `json:"archived"`
	} `json:"jobs"`
	Runs struct {
		Running     int64 `json:"running"`
		Queued      int64 `json:"queued"`
		Success24h  int64 `json:"success_24h"` // ended in the last 24 hours
		Failed24h   int64 `json:"failed_24h"`
		Rejected24h int64 `json:"rejected_24h"`
	} `json:"runs"`
}

type dashboardTrendDay struct {
	Day     string `json:"day"` // YYYY-MM-DD, UTC
	Success int64  `json:"success"`
	Failed  int64  `json:"failed"`
}

type dashboardAgents struct {
	Online  int `json:"online"`
	Offline int `json:"offline"`
	Revoked int `json:"revoked"`
	Total   int `json:"total"`
}

type dashboardNotification struct {
	ID          string  `json:"id"`
	RunID       string  `json:"run_id"`
	JobID       string  `json:"job_id"`
	JobName     string  `json:"job_name"`
	Channel     string  `json:"channel"`
	Destination string  `json:"destination"`
	Attempts    int     `json:"attempts"`
	UpdatedAt   int64   `json:"updated_at"`
	LastError   *string `json:"last_error"`
}

type dashboardSnapshot struct {
	RunID         string  `json:"run_id"`
	JobID         string  `json:"job_id"`
	JobName       string  `json:"job_name"`
	NodeID        string  `json:"node_id"`
	TargetType    string  `json:"target_type"`
	StartedAt     int64   `json:"started_at"`
	EndedAt       int64   `json:"ended_at"`
	LastErrorKind *string `json:"last_error_kind"`
	LastError     *string `json:"last_error"`
}

type dashboardAttention struct {
	FailedRuns               []dashboardRun          `json:"failed_runs"` // started within the chart's days
	FailedRunsTotal          int64                   `json:"failed_runs_total"`
	FailedNotifications      []dashboardNotification `json:"failed_notifications"`
	FailedNotificationsTotal int64                   `json:"failed_notifications_total"`
	ErrorSnapshots           []dashboardSnapshot     `json:"error_snapshots"`
	ErrorSnapshotsTotal      int64                   `json:"error_snapshots_total"`
}

type dashboardOverviewJSON struct {
	Timezone    string             `json:"timezone"`
	GeneratedAt int64              `json:"generated_at"`
	Days        []dashboardDay     `json:"days"` // oldest first, the last one is today
	JobsTotal   int64              `json:"jobs_total"`
	RecentRuns  []dashboardRun     `json:"recent_runs"` // newest started first
	Agents      dashboardAgents    `json:"agents"`
	Attention   dashboardAttention `json:"attention"`
	// Verification summarises how recently the jobs' snapshots were proven by a drill.
	Verification dashboardVerification `json:"verification"`
	Stats        dashboardStats        `json:"stats"`
	Trend7d      []dashboardTrendDay   `json:"trend_7d"` // oldest first, the last one is today (UTC)
}

// dashboardOverview answers GET /api/dashboard/overview?days=N (1..90, default 14): per-day run
// counts and bytes over the last N calendar days in the Hub's time zone (today included), the
// newest runs, agent counts and what needs attention, all from one consistent read.
func (s *Server) dashboardOverview(w http.ResponseWriter, r *http.Request) {
	days, err := readDays(r.URL.Query(), dashboardDefaultDays, dashboardMaxDays)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	loc, err := time.LoadLocation(s.cfg.HubTimezone)
	if err != nil {
		respond.Error(w, r, fmt.Errorf("load hub time zone %q: %w", s.cfg.HubTimezone, err))
		return
	}
	now := s.now()
	out := dashboardOverviewJSON{Timezone: loc.String(), GeneratedAt: now.Unix()}
	if err := s.dashboardData(r, now, loc, days, &out); err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, out)
}

// dashboardData fills out from one read transaction.
func (s *Server) dashboardData(r *http.Request, now time.Time, loc *time.Location, days int, out *dashboardOverviewJSON) error {
	ctx := r.Context()
	// Calendar-day boundaries in the Hub's zone: time.Date normalises across DST, so a day is 23,
	// 24 or 25 hours long as it really was. Labels come from noon, which every day has.
	y, m, d := now.In(loc).Date()
	first := d - days + 1
	bounds := make([]int64, days+1)
	chart := make([]dashboardDay, days)
	for i := range bounds {
		bounds[i] = time.Date(y, m, first+i, 0, 0, 0, 0, loc).Unix()
		if i < days {
			chart[i] = dashboardDay{Day: time.Date(y, m, first+i, 12, 0, 0, 0, loc).Format(time.DateOnly), Start: bounds[i]}
		}
	}
	att := &out.Attention
	err := s.db.Read(ctx, func(q storage.Q) error {
		totals, err := q.RunTotalsBetween(ctx, bounds)
		if err != nil {
			return err
		}
		for i, t := range totals {
			chart[i].Success, chart[i].Failed, chart[i].Bytes = t.Success, t.Failed, t.Bytes
		}
		if out.JobsTotal, err = q.CountJobs(ctx); err != nil {
			return err
		}
		// The newest runs overall: the newest few of each status, merged, each read from the
		// (status, started_at) index.
		var recent []storage.RunSummary
		for st := range runStatuses { // every status; the merge below fixes the order
			rs, err := q.RunsByStatusSince(ctx, st, 0, dashboardListLimit)
			if err != nil {
				return err
			}
			recent = append(recent, rs...)
		}
		slices.SortFunc(recent, func(a, b storage.RunSummary) int {
			return cmp.Or(cmp.Compare(b.StartedAt, a.StartedAt), cmp.Compare(b.ID, a.ID))
		})
		out.RecentRuns = toDashboardRuns(recent[:min(len(recent), dashboardListLimit)])

		failed, err := q.RunsByStatusSince(ctx, storage.RunFailed, bounds[0], dashboardListLimit)
		if err != nil {
			return err
		}
		att.FailedRuns = toDashboardRuns(failed)
		if att.FailedRunsTotal, err = q.CountRunsByStatusSince(ctx, storage.RunFailed, bounds[0]); err != nil {
			return err
		}

		nf := storage.NotificationQueueFilter{Node: secrets.HubNode, Kinds: notify.StorageKinds(), Statuses: []string{storage.NotificationFailed}, Limit: dashboardListLimit}
		notes, err := q.ListNotificationQueue(ctx, nf)
		if err != nil {
			return err
		}
		att.FailedNotifications = make([]dashboardNotification, 0, len(notes))
		for _, n := range notes {
			att.FailedNotifications = append(att.FailedNotifications, dashboardNotification{ID: n.ID, RunID: n.RunID,
				JobID: n.JobID, JobName: n.JobName, Channel: n.Channel, Destination: n.SecretName, Attempts: n.Attempts,
				UpdatedAt: n.UpdatedAt, LastError: n.LastError})
		}
		if att.FailedNotificationsTotal, err = q.CountNotificationQueue(ctx, nf); err != nil {
			return err
		}

		snaps, err := q.SnapshotsInStatus(ctx, storage.SnapshotError, dashboardListLimit)
		if err != nil {
			return err
		}
		att.ErrorSnapshots = make([]dashboardSnapshot, 0, len(snaps))
		for _, sn := range snaps {
			att.ErrorSnapshots = append(att.ErrorSnapshots, dashboardSnapshot{RunID: sn.RunID, JobID: sn.JobID,
				JobName: sn.JobName, NodeID: sn.NodeID, TargetType: sn.TargetType, StartedAt: sn.StartedAt,
				EndedAt: sn.EndedAt, LastErrorKind: sn.LastErrorKind, LastError: sn.LastError})
		}
		if att.ErrorSnapshotsTotal, err = q.CountSnapshotsInStatus(ctx, storage.SnapshotError); err != nil {
			return err
		}

		// Online as the agents page says it (seen within the online window), from the same read.
		agents, err := q.ListAgents(ctx)
		if err != nil {
			return err
		}
		for _, a := range agents {
			v := s.viewAgent(a, now.Unix())
			switch {
			case v.Revoked:
				out.Agents.Revoked++
			case v.Online:
				out.Agents.Online++
			default:
				out.Agents.Offline++
			}
		}
		out.Agents.Total = len(agents)
		if err := dashboardOriginalStats(ctx, q, now, out); err != nil {
			return err
		}
		out.Verification, err = s.dashboardVerificationData(ctx, q, now.Unix())
		return err
	})
	if err != nil {
		return fmt.Errorf("read dashboard overview: %w", err)
	}
	out.Days = chart
	return nil
}

// dashboardOriginalStats fills stats and trend_7d, in the read of dashboardData; out.Agents and
// out.JobsTotal are already set.
func dashboardOriginalStats(ctx context.Context, q storage.Q, now time.Time, out *dashboardOverviewJSON) error {
	st := &out.Stats
	st.Agents.Total, st.Agents.Online, st.Agents.Offline, st.Agents.Revoked =
		out.Agents.Total, out.Agents.Online, out.Agents.Offline, out.Agents.Revoked
	st.Agents.Active = out.Agents.Total - out.Agents.Revoked
	archived, err := q.CountArchivedJobs(ctx)
	if err != nil {
		return err
	}
	st.Jobs.Active, st.Jobs.Archived = out.JobsTotal-archived, archived
	if st.Runs.Running, err = q.CountRunsByStatusSince(ctx, storage.RunRunning, 0); err != nil {
		return err
	}
	if st.Runs.Queued, err = q.CountRunsByStatusSince(ctx, storage.RunQueued, 0); err != nil {
		return err
	}
	// A rejected run ends when it starts, so counting by start is counting by end.
	if st.Runs.Rejected24h, err = q.CountRunsByStatusSince(ctx, storage.RunRejected, now.Unix()-86400); err != nil {
		return err
	}
	day, err := q.RunTotalsBetween(ctx, []int64{now.Unix() - 86400, now.Unix() + 1})
	if err != nil {
		return err
	}
	st.Runs.Success24h, st.Runs.Failed24h = day[0].Success, day[0].Failed
	today := now.UTC().Truncate(24 * time.Hour)
	bounds := make([]int64, 0, 8)
	for i := -6; i <= 1; i++ {
		bounds = append(bounds, today.AddDate(0, 0, i).Unix())
	}
	week, err := q.RunTotalsBetween(ctx, bounds)
	if err != nil {
		return err
	}
	out.Trend7d = make([]dashboardTrendDay, 0, len(week))
	for i, t := range week {
		out.Trend7d = append(out.Trend7d, dashboardTrendDay{Day: today.AddDate(0, 0, i-6).Format(time.DateOnly),
			Success: t.Success, Failed: t.Failed})
	}
	return nil
}

func toDashboardRuns(rs []storage.RunSummary) []dashboardRun {
	out := make([]dashboardRun, 0, len(rs))
	for _, r := range rs {
		node := "hub"
		if r.AgentID != nil {
			node = *r.AgentID
		}
		out = append(out, dashboardRun{ID: r.ID, JobID: r.JobID, JobName: r.JobName, Status: r.Status,
			StartedAt: r.StartedAt, EndedAt: r.EndedAt, Error: r.Error, RunID: r.ID, NodeID: node, ExecutedOffline: r.ExecutedOffline})
	}
	return out
}

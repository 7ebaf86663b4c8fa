package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// overview mirrors GET /api/dashboard/overview.
type overview struct {
	Timezone string `json:"timezone"`
	Days     []struct {
		Day     string `json:"day"`
		Start   int64  `json:"start"`
		Success int64  `json:"success"`
		Failed  int64  `json:"failed"`
		Bytes   int64  `json:"bytes"`
	} `json:"days"`
	JobsTotal  int64         `json:"jobs_total"`
	RecentRuns []overviewRun `json:"recent_runs"`
	Agents     struct {
		Online, Offline, Revoked, Total int
	} `json:"agents"`
	Attention struct {
		FailedRuns          []overviewRun `json:"failed_runs"`
		FailedRunsTotal     int64         `json:"failed_runs_total"`
		FailedNotifications []struct {
			ID          string  `json:"id"`
			JobName     string  `json:"job_name"`
			Destination string  `json:"destination"`
			LastError   *string `json:"last_error"`
		} `json:"failed_notifications"`
		FailedNotificationsTotal int64 `json:"failed_notifications_total"`
		ErrorSnapshots           []struct {
			RunID     string  `json:"run_id"`
			JobID     string  `json:"job_id"`
			JobName   string  `json:"job_name"`
			LastError *string `json:"last_error"`
		} `json:"error_snapshots"`
		ErrorSnapshotsTotal int64 `json:"error_snapshots_total"`
	} `json:"attention"`
}

type overviewRun struct {
	ID        string `json:"id"`
	JobID     string `json:"job_id"`
	JobName   string `json:"job_name"`
	Status    string `json:"status"`
	StartedAt int64  `json:"started_at"`
	EndedAt   *int64 `json:"ended_at"`
}

type dashBundle struct {
	hub *apitest.Hub
	c   *apitest.Client
	n   int // run id counter
}

func setupDashboard(t *testing.T, tz string, now time.Time) *dashBundle {
	t.Helper()
	hub := apitest.Start(t, apitest.WithClock(clock.NewFake(now)), apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.HubTimezone = tz
	}))
	return &dashBundle{hub: hub, c: hub.Login(t)}
}

func (b *dashBundle) write(t *testing.T, fn func(ctx context.Context, q storage.Q) error) {
	t.Helper()
	ctx := context.Background()
	if err := b.hub.DB.Write(ctx, func(q storage.Q) error { return fn(ctx, q) }); err != nil {
		t.Fatal(err)
	}
}

func (b *dashBundle) job(t *testing.T, id, name string) {
	t.Helper()
	b.write(t, func(ctx context.Context, q storage.Q) error {
		return q.InsertJob(ctx, storage.Job{ID: id, Name: name, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
			MissedRunPolicy: "skip", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1})
	})
}

// run stores a run of job that ended at ended (started a minute before); ended zero leaves it
// unfinished. transfer/source ≥ 0 also index a snapshot with those sizes (-1: NULL).
func (b *dashBundle) run(t *testing.T, job, status string, ended time.Time, transfer, source int64) string {
	t.Helper()
	b.n++
	id := fmt.Sprintf("run-%04d", b.n)
	end := ended.Unix()
	r := storage.Run{ID: id, JobID: job, Status: status, StartedAt: end - 60}
	if !ended.IsZero() {
		r.EndedAt = &end
	} else {
		r.StartedAt = b.hub.Clock.Now().Unix() - 5
	}
	b.write(t, func(ctx context.Context, q storage.Q) error {
		if err := q.InsertRun(ctx, r); err != nil {
			return err
		}
		if transfer < 0 && source < 0 {
			return nil
		}
		a := storage.RunArtifact{RunID: id, JobID: job, NodeID: "hub", TargetType: "local_dir", TargetSnapshotJSON: "{}",
			ArtifactFormat: "archive_v1", Status: storage.SnapshotPresent, StartedAt: end - 60, EndedAt: end, CreatedAt: end, UpdatedAt: end}
		if transfer >= 0 {
			a.TransferBytes = &transfer
		}
		if source >= 0 {
			a.SourceBytes = &source
		}
		return q.UpsertRunArtifact(ctx, a)
	})
	return id
}

func (b *dashBundle) overview(t *testing.T, query string) overview {
	t.Helper()
	resp := b.c.Do(t, http.MethodGet, "/api/dashboard/overview"+query, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("overview%s: %s", query, resp)
	}
	var o overview
	resp.Decode(t, &o)
	return o
}

func TestDashboardOverview(t *testing.T) {
	t.Parallel()
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	// 20:00 on 10 March in Shanghai (UTC+8), 12:00 UTC.
	now := time.Date(2026, 3, 10, 20, 0, 0, 0, sh)
	b := setupDashboard(t, "Asia/Shanghai", now)
	at := func(day, hour, minute int) time.Time { return time.Date(2026, 3, day, hour, minute, 0, 0, sh) }
	b.job(t, "job-hourly", "hourly")
	b.job(t, "job-web", "web")

	// 70 successful runs of one job on 9 March: more than any per-job page holds (50).
	for i := range 70 {
		b.run(t, "job-hourly", storage.RunSuccess, at(9, 0, 10).Add(time.Duration(i)*20*time.Minute), 10, -1)
	}
	// Day boundaries in Shanghai, not UTC: 23:59 on the 9th is the 9th, 00:01 on the 10th is
	// the 10th, though both are 9 March in UTC.
	b.run(t, "job-web", storage.RunFailed, at(9, 23, 59), -1, -1)
	b.run(t, "job-web", storage.RunSuccess, at(10, 0, 1), -1, 7) // no transfer size: the source size counts
	failedToday := b.run(t, "job-web", storage.RunFailed, at(10, 8, 0), -1, -1)
	b.run(t, "job-web", storage.RunCanceled, at(10, 9, 0), -1, -1)     // in neither series
	b.run(t, "job-web", storage.RunSuccess, at(7, 23, 59), 1000, 1000) // before the window
	oldFailed := b.run(t, "job-web", storage.RunFailed, at(7, 12, 0), -1, -1)
	running := b.run(t, "job-web", storage.RunRunning, time.Time{}, -1, -1)

	// A snapshot in error, on the 8th.
	errSnap := b.run(t, "job-web", storage.RunSuccess, at(8, 10, 0), 3, 3)
	b.write(t, func(ctx context.Context, q storage.Q) error {
		_, err := q.Exec(ctx, `UPDATE run_artifacts SET status = 'error', last_error = 'target unreachable' WHERE run_id = ?`, errSnap)
		return err
	})
	// 12 failed notifications (more than the list carries) and a sent one.
	b.write(t, func(ctx context.Context, q storage.Q) error {
		for i := range 13 {
			st, msg := storage.NotificationFailed, "http 500"
			if i == 12 {
				st = storage.NotificationSent
			}
			if _, err := q.InsertNotification(ctx, storage.Notification{ID: fmt.Sprintf("n-%02d", i), RunID: failedToday,
				Channel: "webhook", SecretName: fmt.Sprintf("hook-%02d", i), Status: st, NextAttemptAt: 1, LastError: &msg,
				CreatedAt: int64(100 + i), UpdatedAt: int64(100 + i)}); err != nil {
				return err
			}
		}
		return nil
	})
	// Agents: one online, one seen long ago, one never seen, one revoked.
	b.write(t, func(ctx context.Context, q storage.Q) error {
		for i, name := range []string{"online", "stale", "never", "revoked"} {
			if err := q.InsertAgent(ctx, storage.Agent{ID: "agent-" + name, Name: &name, KeyHash: []byte{byte(i)}, CreatedAt: 1, UpdatedAt: 1}); err != nil {
				return err
			}
		}
		if err := q.TouchAgentSeen(ctx, "agent-online", now.Unix()-5); err != nil {
			return err
		}
		if err := q.TouchAgentSeen(ctx, "agent-stale", now.Unix()-3600); err != nil {
			return err
		}
		return q.RevokeAgent(ctx, "agent-revoked", now.Unix())
	})

	o := b.overview(t, "?days=3")
	if o.Timezone != "Asia/Shanghai" {
		t.Errorf("timezone %q", o.Timezone)
	}
	type day struct {
		day                           string
		start, success, failed, bytes int64
	}
	want := []day{
		{"2026-03-08", at(8, 0, 0).Unix(), 1, 0, 3},
		{"2026-03-09", at(9, 0, 0).Unix(), 70, 1, 700},
		{"2026-03-10", at(10, 0, 0).Unix(), 1, 1, 7},
	}
	if len(o.Days) != len(want) {
		t.Fatalf("%d days, want %d: %+v", len(o.Days), len(want), o.Days)
	}
	for i, w := range want {
		g := o.Days[i]
		if g.Day != w.day || g.Start != w.start || g.Success != w.success || g.Failed != w.failed || g.Bytes != w.bytes {
			t.Errorf("day %d = %+v, want %+v", i, g, w)
		}
	}
	if o.JobsTotal != 2 {
		t.Errorf("jobs_total %d, want 2", o.JobsTotal)
	}

	// Newest started first, across statuses: the running run, then today's runs.
	if len(o.RecentRuns) != 10 {
		t.Fatalf("%d recent runs, want 10", len(o.RecentRuns))
	}
	if r := o.RecentRuns[0]; r.ID != running || r.Status != storage.RunRunning || r.EndedAt != nil || r.JobName != "web" {
		t.Errorf("first recent run %+v, want the running one of web", r)
	}
	if o.RecentRuns[1].Status != storage.RunCanceled || o.RecentRuns[2].ID != failedToday {
		t.Errorf("recent runs not newest first: %+v", o.RecentRuns[:3])
	}
	for i := 1; i < len(o.RecentRuns); i++ {
		if o.RecentRuns[i].StartedAt > o.RecentRuns[i-1].StartedAt {
			t.Errorf("recent run %d started after run %d", i, i-1)
		}
	}

	att := o.Attention
	if len(att.FailedRuns) != 2 || att.FailedRunsTotal != 2 || att.FailedRuns[0].ID != failedToday || att.FailedRuns[0].JobName != "web" {
		t.Errorf("failed runs %+v (total %d), want today's and the 9th's, not %s", att.FailedRuns, att.FailedRunsTotal, oldFailed)
	}
	if len(att.FailedNotifications) != 10 || att.FailedNotificationsTotal != 12 {
		t.Errorf("%d failed notifications of %d, want 10 of 12", len(att.FailedNotifications), att.FailedNotificationsTotal)
	} else if n := att.FailedNotifications[0]; n.ID != "n-11" || n.Destination != "hook-11" || n.JobName != "web" || n.LastError == nil || *n.LastError != "http 500" {
		t.Errorf("newest failed notification %+v", n)
	}
	if len(att.ErrorSnapshots) != 1 || att.ErrorSnapshotsTotal != 1 {
		t.Fatalf("error snapshots %+v (total %d), want 1", att.ErrorSnapshots, att.ErrorSnapshotsTotal)
	}
	if s := att.ErrorSnapshots[0]; s.RunID != errSnap || s.JobID != "job-web" || s.JobName != "web" || s.LastError == nil || *s.LastError != "target unreachable" {
		t.Errorf("error snapshot %+v", s)
	}
	if a := o.Agents; a.Online != 1 || a.Offline != 2 || a.Revoked != 1 || a.Total != 4 {
		t.Errorf("agents %+v, want 1 online, 2 offline, 1 revoked of 4", a)
	}

	// Without days: the last 14 days, today last.
	o = b.overview(t, "")
	if len(o.Days) != 14 || o.Days[13].Day != "2026-03-10" || o.Days[0].Day != "2026-02-25" {
		t.Errorf("default window %d days, %s … %s", len(o.Days), o.Days[0].Day, o.Days[len(o.Days)-1].Day)
	}
	if o.Days[11].Day != "2026-03-08" || o.Days[11].Success != 1 || o.Days[10].Success != 1 {
		t.Errorf("the 7th and 8th: %+v %+v", o.Days[10], o.Days[11])
	}
}

// A day that loses an hour to daylight saving time is 23 hours long, and runs fall on the day
// the Hub's wall clock showed.
func TestDashboardOverviewDST(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	b := setupDashboard(t, "Europe/Berlin", time.Date(2026, 3, 30, 12, 0, 0, 0, berlin))
	b.job(t, "job-a", "a")
	b.run(t, "job-a", storage.RunSuccess, time.Date(2026, 3, 29, 23, 30, 0, 0, berlin), -1, -1)
	b.run(t, "job-a", storage.RunSuccess, time.Date(2026, 3, 30, 0, 30, 0, 0, berlin), -1, -1)
	b.run(t, "job-a", storage.RunSuccess, time.Date(2026, 3, 30, 1, 30, 0, 0, berlin), -1, -1)

	o := b.overview(t, "?days=2")
	if len(o.Days) != 2 {
		t.Fatalf("%d days", len(o.Days))
	}
	if got := o.Days[1].Start - o.Days[0].Start; got != 23*3600 {
		t.Errorf("29 March lasted %d s, want 23 h", got)
	}
	if o.Days[0].Day != "2026-03-29" || o.Days[0].Success != 1 || o.Days[1].Day != "2026-03-30" || o.Days[1].Success != 2 {
		t.Errorf("days %+v", o.Days)
	}
}

func TestDashboardOverviewRefusesBadDays(t *testing.T) {
	t.Parallel()
	b := setupDashboard(t, "UTC", apitest.Epoch)
	for _, q := range []string{"?days=0", "?days=91", "?days=two", "?days=-1"} {
		resp := b.c.Do(t, http.MethodGet, "/api/dashboard/overview"+q, nil)
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid_days" {
			t.Errorf("%s: %s, want 400 invalid_days", q, resp)
		}
	}
	if resp := b.hub.Client(t).Do(t, http.MethodGet, "/api/dashboard/overview", nil); resp.Status != http.StatusUnauthorized {
		t.Errorf("without a session: %s, want 401", resp)
	}
	// An empty Hub answers zeros, not nulls.
	o := b.c.Do(t, http.MethodGet, "/api/dashboard/overview?days=1", nil).JSON(t)
	for _, k := range []string{"recent_runs", "days"} {
		if _, ok := o[k].([]any); !ok {
			t.Errorf("%s = %v, want an array", k, o[k])
		}
	}
	att := o["attention"].(map[string]any)
	for _, k := range []string{"failed_runs", "failed_notifications", "error_snapshots"} {
		if _, ok := att[k].([]any); !ok {
			t.Errorf("attention.%s = %v, want an array", k, att[k])
		}
	}
}

// The overview also carries the original's stats and trend_7d (issue 13): fixed 24-hour and
// 7-day windows in UTC, whatever the Hub's zone.
func TestDashboardOverviewOriginalStats(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	b := setupDashboard(t, "Asia/Shanghai", now)
	b.job(t, "job-a", "a")
	b.job(t, "job-b", "b")
	b.job(t, "job-old", "old")
	b.write(t, func(ctx context.Context, q storage.Q) error {
		_, err := q.Exec(ctx, `UPDATE jobs SET archived_at = 5 WHERE id = 'job-old'`)
		return err
	})
	b.run(t, "job-a", storage.RunSuccess, now.Add(-time.Hour), -1, -1)
	b.run(t, "job-a", storage.RunFailed, now.Add(-2*time.Hour), -1, -1)
	b.run(t, "job-a", storage.RunSuccess, now.Add(-30*time.Hour), -1, -1) // 9 March: the trend, not the last 24 hours
	b.run(t, "job-a", storage.RunSuccess, now.Add(-8*24*time.Hour), -1, -1)
	b.run(t, "job-b", storage.RunRejected, now.Add(-time.Hour), -1, -1)
	b.run(t, "job-b", storage.RunRunning, time.Time{}, -1, -1)
	b.run(t, "job-b", storage.RunQueued, time.Time{}, -1, -1)
	b.write(t, func(ctx context.Context, q storage.Q) error {
		for i, name := range []string{"on", "gone"} {
			if err := q.InsertAgent(ctx, storage.Agent{ID: "agent-" + name, Name: &name, KeyHash: []byte{byte(i)}, CreatedAt: 1, UpdatedAt: 1}); err != nil {
				return err
			}
		}
		if err := q.TouchAgentSeen(ctx, "agent-on", now.Unix()-5); err != nil {
			return err
		}
		return q.RevokeAgent(ctx, "agent-gone", now.Unix())
	})

	var o struct {
		Stats struct {
			Agents struct{ Total, Active, Online, Offline, Revoked int }
			Jobs   struct{ Active, Archived int }
			Runs   map[string]int
		}
		Trend7d []struct {
			Day             string
			Success, Failed int
		} `json:"trend_7d"`
		RecentRuns []map[string]any `json:"recent_runs"`
	}
	b.c.Do(t, http.MethodGet, "/api/dashboard/overview", nil).Decode(t, &o)
	if a := o.Stats.Agents; a.Total != 2 || a.Active != 1 || a.Online != 1 || a.Offline != 0 || a.Revoked != 1 {
		t.Errorf("stats.agents = %+v", a)
	}
	if j := o.Stats.Jobs; j.Active != 2 || j.Archived != 1 {
		t.Errorf("stats.jobs = %+v", j)
	}
	want := map[string]int{"running": 1, "queued": 1, "success_24h": 1, "failed_24h": 1, "rejected_24h": 1}
	if fmt.Sprint(o.Stats.Runs) != fmt.Sprint(want) {
		t.Errorf("stats.runs = %v, want %v", o.Stats.Runs, want)
	}
	if len(o.Trend7d) != 7 || o.Trend7d[0].Day != "2026-03-04" || o.Trend7d[6].Day != "2026-03-10" ||
		o.Trend7d[6].Success != 1 || o.Trend7d[6].Failed != 1 || o.Trend7d[5].Success != 1 {
		t.Errorf("trend_7d = %+v", o.Trend7d)
	}
	if len(o.RecentRuns) == 0 || o.RecentRuns[0]["run_id"] != o.RecentRuns[0]["id"] || o.RecentRuns[0]["node_id"] != "hub" ||
		o.RecentRuns[0]["executed_offline"] != false {
		t.Errorf("recent_runs = %v", o.RecentRuns)
	}
}

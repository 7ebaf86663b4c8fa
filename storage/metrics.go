package storage

import (
	"context"
	"fmt"
)

// Metrics queries: what /metrics reports from the database at every scrape. Each is an aggregate
// over a small table (jobs, agents, run_totals, job_verification) or over an index range that
// stays small (queued and running runs, live snapshots); queryplan_test.go checks the plans.
const (
	qMetricsJobs = `SELECT id, name, COALESCE(NULLIF(agent_id, ''), 'hub'), schedule IS NOT NULL, archived_at IS NOT NULL FROM jobs`
	// run_totals is kept by triggers (migration 0135): one row per job and terminal status.
	qMetricsRunTotals    = `SELECT job_id, status, runs, last_ended_at FROM run_totals`
	qMetricsRunsInStatus = `SELECT COUNT(*) FROM runs WHERE status = ?`
	// Online as the agents page says it: not revoked and heard from within the online window.
	qMetricsAgents = `SELECT COALESCE(SUM(revoked_at IS NOT NULL), 0),
		COALESCE(SUM(revoked_at IS NULL AND last_seen_at >= ?), 0),
		COALESCE(SUM(revoked_at IS NULL AND (last_seen_at IS NULL OR last_seen_at < ?)), 0)
		FROM agents`
	// notification_counts is kept by triggers (migration 0136): one row per status.
	qMetricsNotifications = `SELECT status, n FROM notification_counts`
	// Snapshots still on their targets (present), per job: for each job, one range of the
	// covering index on (job_id, status, bytes) (migration 0136), never the rows. Bytes as the
	// dashboard counts them: transfer bytes, else source bytes. Sizes come from agents: summed
	// with sumBytes, never SUM, so that no stored value can fail a scrape.
	qMetricsSnapshots = `SELECT job_id, COUNT(*), ` + sumBytes + `
		FROM run_artifacts WHERE job_id IN (SELECT id FROM jobs) AND status = 'present'
		GROUP BY job_id`
	qMetricsVerify = `SELECT job_id, last_verify_status, last_verified_at, last_proven_at FROM job_verification
		WHERE last_verify_status IS NOT NULL`
)

// sumBytes totals snapshot sizes (transfer bytes, else source bytes) without failing. SQLite's
// SUM errors with "integer overflow" once a total passes 2^63, and the sizes were reported by
// agents; TOTAL adds in floating point and never errors, negative sizes count as none, and the
// cast saturates at the int64 range. Sizes up to 2^53 (all the Hub accepts) add exactly.
const sumBytes = `CAST(TOTAL(MAX(0, COALESCE(transfer_bytes, source_bytes))) AS INTEGER)`

// MetricsJob is a job as metrics label it.
type MetricsJob struct {
	ID        string
	Name      string
	Node      string // "hub" or the agent id
	Scheduled bool   // has a cron schedule (else manual only)
	Archived  bool
}

// RunTotal is how many runs of a job ended in a terminal status, and when the last one ended.
type RunTotal struct {
	JobID       string
	Status      string
	Runs        int64
	LastEndedAt *int64
}

// JobSnapshots are the snapshots of a job still present on its target.
type JobSnapshots struct {
	JobID string
	Count int64
	Bytes int64
}

// JobVerify is the outcome of a job's last restore drill.
type JobVerify struct {
	JobID          string
	LastStatus     string // success | failed | canceled
	LastVerifiedAt *int64
	LastProvenAt   *int64
}

// MetricsCounts is everything /metrics reads from the database at one scrape.
type MetricsCounts struct {
	Jobs          []MetricsJob
	RunTotals     []RunTotal
	Queued        int64
	Running       int64
	AgentsOnline  int64
	AgentsOffline int64
	AgentsRevoked int64
	Notifications map[string]int64 // by status
	Snapshots     []JobSnapshots
	Verify        []JobVerify
}

// MetricsCounts reads what /metrics reports. onlineSince is the oldest last_seen_at that still
// counts an agent as online. Run it inside db.Read so that every figure comes from one snapshot.
func (q Q) MetricsCounts(ctx context.Context, onlineSince int64) (MetricsCounts, error) {
	var c MetricsCounts
	if err := q.scanAll(ctx, "read jobs for metrics", qMetricsJobs, nil, func(s scanner) error {
		var j MetricsJob
		if err := s.Scan(&j.ID, &j.Name, &j.Node, &j.Scheduled, &j.Archived); err != nil {
			return err
		}
		c.Jobs = append(c.Jobs, j)
		return nil
	}); err != nil {
		return c, err
	}
	if err := q.scanAll(ctx, "read run totals", qMetricsRunTotals, nil, func(s scanner) error {
		var t RunTotal
		if err := s.Scan(&t.JobID, &t.Status, &t.Runs, &t.LastEndedAt); err != nil {
			return err
		}
		c.RunTotals = append(c.RunTotals, t)
		return nil
	}); err != nil {
		return c, err
	}
	for _, st := range []struct {
		status string
		n      *int64
	}{{RunQueued, &c.Queued}, {RunRunning, &c.Running}} {
		if err := q.ex.QueryRowContext(ctx, qMetricsRunsInStatus, st.status).Scan(st.n); err != nil {
			return c, fmt.Errorf("count %s runs: %w", st.status, err)
		}
	}
	if err := q.ex.QueryRowContext(ctx, qMetricsAgents, onlineSince, onlineSince).
		Scan(&c.AgentsRevoked, &c.AgentsOnline, &c.AgentsOffline); err != nil {
		return c, fmt.Errorf("count agents by state: %w", err)
	}
	c.Notifications = map[string]int64{}
	if err := q.scanAll(ctx, "read notification counts", qMetricsNotifications, nil, func(s scanner) error {
		var status string
		var n int64
		if err := s.Scan(&status, &n); err != nil {
			return err
		}
		c.Notifications[status] = n
		return nil
	}); err != nil {
		return c, err
	}
	if err := q.scanAll(ctx, "sum snapshots by job", qMetricsSnapshots, nil, func(s scanner) error {
		var js JobSnapshots
		if err := s.Scan(&js.JobID, &js.Count, &js.Bytes); err != nil {
			return err
		}
		c.Snapshots = append(c.Snapshots, js)
		return nil
	}); err != nil {
		return c, err
	}
	if err := q.scanAll(ctx, "read verification results", qMetricsVerify, nil, func(s scanner) error {
		var v JobVerify
		if err := s.Scan(&v.JobID, &v.LastStatus, &v.LastVerifiedAt, &v.LastProvenAt); err != nil {
			return err
		}
		c.Verify = append(c.Verify, v)
		return nil
	}); err != nil {
		return c, err
	}
	return c, nil
}

type scanner interface{ Scan(dest ...any) error }

// scanAll runs query and hands each row to fn; what names the query in errors.
func (q Q) scanAll(ctx context.Context, what, query string, args []any, fn func(scanner) error) error {
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

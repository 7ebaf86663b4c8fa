package storage

import (
	"context"
	"fmt"
)

// Fleet queries: per-agent counts for the fleet page, each one grouped read from an index
// (jobs_agent_id, agent_tasks_open_agent) whatever the number of agents.
const (
	qFleetJobCounts = `SELECT agent_id, COUNT(*) FROM jobs
		WHERE agent_id IS NOT NULL AND archived_at IS NULL GROUP BY agent_id`
	qFleetOpenTaskCounts = `SELECT agent_id, COUNT(*) FROM agent_tasks
		WHERE completed_at IS NULL GROUP BY agent_id`
	qAgentJobCount      = `SELECT COUNT(*) FROM jobs WHERE agent_id = ? AND archived_at IS NULL`
	qAgentOpenTaskCount = `SELECT COUNT(*) FROM agent_tasks WHERE agent_id = ? AND completed_at IS NULL`
	// qAgentRecentRuns walks the agent's jobs (jobs_agent_id) and each job's newest runs
	// (runs_job_id_started_at); archived jobs' runs count too, they ran on the agent.
	qAgentRecentRuns = `SELECT r.id, r.job_id, j.name, r.status, r.started_at, r.ended_at, r.error
		FROM runs r JOIN jobs j ON j.id = r.job_id
		WHERE j.agent_id = ? ORDER BY r.started_at DESC, r.id DESC LIMIT ?`
)

// FleetCounts is what the fleet page counts for one agent.
type FleetCounts struct {
	Jobs      int64 // live (not archived) jobs bound to the agent
	OpenTasks int64 // tasks sent or queued for the agent and not completed
}

// AgentFleetCounts returns the counts of every agent that has any; agents missing from the
// map have none.
func (q Q) AgentFleetCounts(ctx context.Context) (map[string]FleetCounts, error) {
	out := map[string]FleetCounts{}
	for _, step := range []struct {
		what, query string
		set         func(c *FleetCounts, n int64)
	}{
		{"jobs", qFleetJobCounts, func(c *FleetCounts, n int64) { c.Jobs = n }},
		{"open tasks", qFleetOpenTaskCounts, func(c *FleetCounts, n int64) { c.OpenTasks = n }},
	} {
		if err := q.groupCounts(ctx, step.query, func(id string, n int64) {
			c := out[id]
			step.set(&c, n)
			out[id] = c
		}); err != nil {
			return nil, fmt.Errorf("count %s per agent: %w", step.what, err)
		}
	}
	return out, nil
}

// AgentCounts returns one agent's counts, as AgentFleetCounts would, without counting the
// whole fleet for a page that shows one agent.
func (q Q) AgentCounts(ctx context.Context, agentID string) (FleetCounts, error) {
	var c FleetCounts
	if err := q.ex.QueryRowContext(ctx, qAgentJobCount, agentID).Scan(&c.Jobs); err != nil {
		return c, fmt.Errorf("count jobs of agent: %w", err)
	}
	if err := q.ex.QueryRowContext(ctx, qAgentOpenTaskCount, agentID).Scan(&c.OpenTasks); err != nil {
		return c, fmt.Errorf("count open tasks of agent: %w", err)
	}
	return c, nil
}

func (q Q) groupCounts(ctx context.Context, query string, add func(id string, n int64)) error {
	rows, err := q.ex.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			return err
		}
		add(id, n)
	}
	return rows.Err()
}

// AgentRecentRuns returns up to limit runs of the agent's jobs, newest started first.
func (q Q) AgentRecentRuns(ctx context.Context, agentID string, limit int) ([]RunSummary, error) {
	rows, err := q.ex.QueryContext(ctx, qAgentRecentRuns, agentID, limit)
	if err != nil {
		return nil, fmt.Errorf("list recent runs of agent %s: %w", agentID, err)
	}
	defer rows.Close()
	var out []RunSummary
	for rows.Next() {
		var r RunSummary
		if err := rows.Scan(&r.ID, &r.JobID, &r.JobName, &r.Status, &r.StartedAt, &r.EndedAt, &r.Error); err != nil {
			return nil, fmt.Errorf("list recent runs of agent %s: %w", agentID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list recent runs of agent %s: %w", agentID, err)
	}
	return out, nil
}

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Agent is a row of agents.
type Agent struct {
	ID                      string
	Name                    *string
	KeyHash                 []byte
	RevokedAt               *int64
	LastSeenAt              *int64
	CapabilitiesJSON        *string
	DesiredConfigSnapshotID *string
	DesiredConfigSnapshotAt *int64
	AppliedConfigSnapshotID *string
	AppliedConfigSnapshotAt *int64
	LastConfigSyncAttemptAt *int64
	LastConfigSyncErrorKind *string
	LastConfigSyncError     *string
	LastConfigSyncErrorAt   *int64
	CreatedAt               int64
	UpdatedAt               int64
	Labels                  []string // filled by the list and get queries, sorted
}

const agentColumns = `id, name, key_hash, revoked_at, last_seen_at, capabilities_json,
	desired_config_snapshot_id, desired_config_snapshot_at, applied_config_snapshot_id, applied_config_snapshot_at,
	last_config_sync_attempt_at, last_config_sync_error_kind, last_config_sync_error, last_config_sync_error_at,
	created_at, updated_at`

const (
	qAgentByKeyHash = `SELECT ` + agentColumns + ` FROM agents WHERE key_hash = ?`
	qAgentLabels    = `SELECT label FROM agent_labels WHERE agent_id = ? ORDER BY label`
)

func scanAgent(sc interface{ Scan(...any) error }) (Agent, error) {
	var a Agent
	err := sc.Scan(&a.ID, &a.Name, &a.KeyHash, &a.RevokedAt, &a.LastSeenAt, &a.CapabilitiesJSON,
		&a.DesiredConfigSnapshotID, &a.DesiredConfigSnapshotAt, &a.AppliedConfigSnapshotID, &a.AppliedConfigSnapshotAt,
		&a.LastConfigSyncAttemptAt, &a.LastConfigSyncErrorKind, &a.LastConfigSyncError, &a.LastConfigSyncErrorAt,
		&a.CreatedAt, &a.UpdatedAt)
	return a, err
}

// InsertAgent stores a newly enrolled agent.
func (q Q) InsertAgent(ctx context.Context, a Agent) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO agents(id, name, key_hash, created_at, updated_at) VALUES (?,?,?,?,?)`,
		a.ID, a.Name, a.KeyHash, a.CreatedAt, a.UpdatedAt)
	if err != nil {
		return fmt.Errorf("insert agent %s: %w", a.ID, err)
	}
	return nil
}

// GetAgent returns an agent with its labels, or ErrNotFound.
func (q Q) GetAgent(ctx context.Context, id string) (Agent, error) {
	a, err := scanAgent(q.ex.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE id = ?`, id))
	if err != nil {
		return Agent{}, fmt.Errorf("get agent %s: %w", id, notFound(err))
	}
	if a.Labels, err = q.agentLabels(ctx, id); err != nil {
		return Agent{}, err
	}
	return a, nil
}

// GetAgentByKeyHash finds the agent whose key hashes to hash (revoked ones included), or
// ErrNotFound. Labels are not loaded: this runs on every agent connection.
func (q Q) GetAgentByKeyHash(ctx context.Context, hash []byte) (Agent, error) {
	a, err := scanAgent(q.ex.QueryRowContext(ctx, qAgentByKeyHash, hash))
	if err != nil {
		return Agent{}, fmt.Errorf("get agent by key: %w", notFound(err))
	}
	return a, nil
}

func (q Q) agentLabels(ctx context.Context, id string) ([]string, error) {
	return q.queryStrings(ctx, "labels of agent "+id, qAgentLabels, id)
}

// ListAgents returns every agent with its labels, oldest first. The fleet is small (a household
// to a few thousand hosts), so filtering and paging happen in the caller.
func (q Q) ListAgents(ctx context.Context) ([]Agent, error) {
	rows, err := q.ex.QueryContext(ctx, `SELECT `+agentColumns+` FROM agents ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	var out []Agent
	idx := map[string]int{}
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list agents: %w", err)
		}
		idx[a.ID] = len(out)
		out = append(out, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	lrows, err := q.ex.QueryContext(ctx, `SELECT agent_id, label FROM agent_labels ORDER BY agent_id, label`)
	if err != nil {
		return nil, fmt.Errorf("list agent labels: %w", err)
	}
	defer lrows.Close()
	for lrows.Next() {
		var id, l string
		if err := lrows.Scan(&id, &l); err != nil {
			return nil, fmt.Errorf("list agent labels: %w", err)
		}
		if i, ok := idx[id]; ok {
			out[i].Labels = append(out[i].Labels, l)
		}
	}
	return out, lrows.Err()
}

// LabelCount is a label and how many agents carry it.
type LabelCount struct {
	Label string
	Count int64
}

// ListAgentLabelCounts returns every label in use, alphabetically.
func (q Q) ListAgentLabelCounts(ctx context.Context) ([]LabelCount, error) {
	rows, err := q.ex.QueryContext(ctx, `SELECT label, COUNT(*) FROM agent_labels GROUP BY label ORDER BY label`)
	if err != nil {
		return nil, fmt.Errorf("list labels: %w", err)
	}
	defer rows.Close()
	var out []LabelCount
	for rows.Next() {
		var lc LabelCount
		if err := rows.Scan(&lc.Label, &lc.Count); err != nil {
			return nil, fmt.Errorf("list labels: %w", err)
		}
		out = append(out, lc)
	}
	return out, rows.Err()
}

// SetAgentLabels replaces the labels of an agent. Run it inside Write.
func (q Q) SetAgentLabels(ctx context.Context, id string, labels []string, now int64) error {
	if _, err := q.ex.ExecContext(ctx, `DELETE FROM agent_labels WHERE agent_id = ?`, id); err != nil {
		return fmt.Errorf("clear labels of agent %s: %w", id, err)
	}
	return q.AddAgentLabels(ctx, id, labels, now)
}

// AddAgentLabels adds labels; ones already present are kept.
func (q Q) AddAgentLabels(ctx context.Context, id string, labels []string, now int64) error {
	for _, l := range labels {
		if _, err := q.ex.ExecContext(ctx, `INSERT OR IGNORE INTO agent_labels(agent_id, label, created_at) VALUES (?,?,?)`, id, l, now); err != nil {
			return fmt.Errorf("add label to agent %s: %w", id, err)
		}
	}
	return nil
}

// RemoveAgentLabels removes labels; absent ones are ignored.
func (q Q) RemoveAgentLabels(ctx context.Context, id string, labels []string) error {
	for _, l := range labels {
		if _, err := q.ex.ExecContext(ctx, `DELETE FROM agent_labels WHERE agent_id = ? AND label = ?`, id, l); err != nil {
			return fmt.Errorf("remove label from agent %s: %w", id, err)
		}
	}
	return nil
}

// ErrAgentRevoked is returned by operations that a revoked agent does not allow.
var ErrAgentRevoked = errors.New("agent is revoked")

// RevokeAgent stamps revoked_at once; revoking again keeps the first time. ErrNotFound if absent.
func (q Q) RevokeAgent(ctx context.Context, id string, now int64) error {
	res, err := q.ex.ExecContext(ctx, `UPDATE agents SET revoked_at = COALESCE(revoked_at, ?), updated_at = ? WHERE id = ?`, now, now, id)
	return affectedOne(res, err, "revoke agent "+id)
}

// EnsureAgentNotRevoked returns ErrAgentRevoked (wrapped) when agentID names a revoked agent, and
// nil for nil (a Hub job), a live agent or one that does not exist. Run it in the transaction that
// starts work for the agent, so that it cannot race the revocation.
func (q Q) EnsureAgentNotRevoked(ctx context.Context, agentID *string) error {
	if agentID == nil {
		return nil
	}
	var revoked *int64
	err := q.ex.QueryRowContext(ctx, `SELECT revoked_at FROM agents WHERE id = ?`, *agentID).Scan(&revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("check agent %s: %w", *agentID, err)
	case revoked != nil:
		return fmt.Errorf("agent %s: %w", *agentID, ErrAgentRevoked)
	}
	return nil
}

// ListQueuedRunIDsOfAgent returns the ids of every queued run of the jobs bound to an agent,
// oldest first (revocation fails them).
func (q Q) ListQueuedRunIDsOfAgent(ctx context.Context, agentID string) ([]string, error) {
	return q.queryStrings(ctx, "list queued runs of agent "+agentID, `SELECT r.id FROM runs r JOIN jobs j ON j.id = r.job_id
		WHERE r.status = 'queued' AND j.agent_id = ? ORDER BY r.started_at, r.rowid`, agentID)
}

// RotateAgentKey replaces the key hash of a live agent; ErrAgentRevoked for a revoked one.
func (q Q) RotateAgentKey(ctx context.Context, id string, keyHash []byte, now int64) error {
	res, err := q.ex.ExecContext(ctx, `UPDATE agents SET key_hash = ?, updated_at = ? WHERE id = ? AND revoked_at IS NULL`, keyHash, now, id)
	if err := affectedOne(res, err, "rotate key of agent "+id); !errors.Is(err, ErrNotFound) {
		return err
	}
	if _, err := q.GetAgent(ctx, id); err != nil {
		return fmt.Errorf("rotate key of agent %s: %w", id, err)
	}
	return fmt.Errorf("rotate key of agent %s: %w", id, ErrAgentRevoked)
}

// TouchAgentSeen records that the agent was heard from at now (never moving backwards).
func (q Q) TouchAgentSeen(ctx context.Context, id string, now int64) error {
	if _, err := q.ex.ExecContext(ctx, `UPDATE agents SET last_seen_at = ? WHERE id = ? AND (last_seen_at IS NULL OR last_seen_at < ?)`, now, id, now); err != nil {
		return fmt.Errorf("touch agent %s: %w", id, err)
	}
	return nil
}

// SetAgentCapabilities stores the raw hello of the agent and its name, if it sent one.
func (q Q) SetAgentCapabilities(ctx context.Context, id, helloJSON string, name *string, now int64) error {
	if _, err := q.ex.ExecContext(ctx, `UPDATE agents SET capabilities_json = ?, name = COALESCE(?, name), updated_at = ? WHERE id = ?`,
		helloJSON, name, now, id); err != nil {
		return fmt.Errorf("store hello of agent %s: %w", id, err)
	}
	return nil
}

// SetDesiredConfig records the snapshot the agent should run and the attempt time.
func (q Q) SetDesiredConfig(ctx context.Context, id, snapshotID string, now int64) error {
	res, err := q.ex.ExecContext(ctx, `UPDATE agents SET
		desired_config_snapshot_at = CASE WHEN desired_config_snapshot_id IS ? THEN desired_config_snapshot_at ELSE ? END,
		desired_config_snapshot_id = ?, last_config_sync_attempt_at = ? WHERE id = ?`,
		snapshotID, now, snapshotID, now, id)
	return affectedOne(res, err, "set desired config of agent "+id)
}

// SetAppliedConfig records the agent's config_ack; it clears a recorded error when the applied
// snapshot is the desired one.
func (q Q) SetAppliedConfig(ctx context.Context, id, snapshotID string, now int64) error {
	_, err := q.ex.ExecContext(ctx, `UPDATE agents SET applied_config_snapshot_id = ?, applied_config_snapshot_at = ?,
		last_config_sync_error_kind = CASE WHEN desired_config_snapshot_id IS ? THEN NULL ELSE last_config_sync_error_kind END,
		last_config_sync_error      = CASE WHEN desired_config_snapshot_id IS ? THEN NULL ELSE last_config_sync_error END,
		last_config_sync_error_at   = CASE WHEN desired_config_snapshot_id IS ? THEN NULL ELSE last_config_sync_error_at END
		WHERE id = ?`, snapshotID, now, snapshotID, snapshotID, snapshotID, id)
	if err != nil {
		return fmt.Errorf("set applied config of agent %s: %w", id, err)
	}
	return nil
}

// SetConfigSyncError records why a snapshot could not be sent; msg is cut to 200 characters.
func (q Q) SetConfigSyncError(ctx context.Context, id, kind, msg string, now int64) error {
	if r := []rune(msg); len(r) > 200 {
		msg = string(r[:200])
	}
	if _, err := q.ex.ExecContext(ctx, `UPDATE agents SET last_config_sync_error_kind = ?, last_config_sync_error = ?,
		last_config_sync_error_at = ? WHERE id = ?`, kind, msg, now, id); err != nil {
		return fmt.Errorf("set config sync error of agent %s: %w", id, err)
	}
	return nil
}

// Enrollment errors; each is an API error code.
var (
	ErrTokenInvalid   = errors.New("invalid_token")
	ErrTokenExpired   = errors.New("expired_token")
	ErrTokenExhausted = errors.New("exhausted")
)

// EnrollmentToken is a row of enrollment_tokens. RemainingUses nil means unlimited.
type EnrollmentToken struct {
	TokenHash     []byte
	CreatedAt     int64
	ExpiresAt     int64
	RemainingUses *int64
}

// InsertEnrollmentToken stores a token hash.
func (q Q) InsertEnrollmentToken(ctx context.Context, t EnrollmentToken) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO enrollment_tokens(token_hash, created_at, expires_at, remaining_uses) VALUES (?,?,?,?)`,
		t.TokenHash, t.CreatedAt, t.ExpiresAt, t.RemainingUses)
	if err != nil {
		return fmt.Errorf("insert enrollment token: %w", err)
	}
	return nil
}

// ConsumeEnrollmentToken uses up one use of a token: ErrTokenInvalid when unknown, ErrTokenExpired
// (the row is deleted) when expired, ErrTokenExhausted when no use is left. A limited token is
// deleted when its last use goes. Run it in the same Write as the agent insert, so that a failed
// insert gives the use back.
func (q Q) ConsumeEnrollmentToken(ctx context.Context, hash []byte, now int64) error {
	var t EnrollmentToken
	err := q.ex.QueryRowContext(ctx, `SELECT expires_at, remaining_uses FROM enrollment_tokens WHERE token_hash = ?`, hash).
		Scan(&t.ExpiresAt, &t.RemainingUses)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrTokenInvalid
	}
	if err != nil {
		return fmt.Errorf("read enrollment token: %w", err)
	}
	del := func() error {
		if _, err := q.ex.ExecContext(ctx, `DELETE FROM enrollment_tokens WHERE token_hash = ?`, hash); err != nil {
			return fmt.Errorf("delete enrollment token: %w", err)
		}
		return nil
	}
	switch {
	case t.ExpiresAt <= now:
		if err := del(); err != nil {
			return err
		}
		return ErrTokenExpired
	case t.RemainingUses == nil:
		return nil
	case *t.RemainingUses <= 0:
		return ErrTokenExhausted
	case *t.RemainingUses == 1:
		return del()
	}
	if _, err := q.ex.ExecContext(ctx, `UPDATE enrollment_tokens SET remaining_uses = remaining_uses - 1 WHERE token_hash = ?`, hash); err != nil {
		return fmt.Errorf("use enrollment token: %w", err)
	}
	return nil
}

// qAgentJobs is an agent's config snapshot: its live jobs, by id.
const qAgentJobs = `SELECT ` + jobColumns + ` FROM jobs WHERE agent_id = ? AND archived_at IS NULL ORDER BY id`

// ListAgentJobs returns the jobs bound to an agent that are not archived, ordered by id.
func (q Q) ListAgentJobs(ctx context.Context, agentID string) ([]Job, error) {
	rows, err := q.ex.QueryContext(ctx, qAgentJobs, agentID)
	if err != nil {
		return nil, fmt.Errorf("list jobs of agent %s: %w", agentID, err)
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list jobs of agent %s: %w", agentID, err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// qUpsertIngestedRun inserts an uploaded offline run, or updates one uploaded before. Only a row
// that was itself ingested (ingested_at) by the same agent (ingested_by), has ended and has no
// agent task is updated: the Hub's own runs keep first-result-wins, cancel-wins and their owner
// whatever an agent uploads, and no agent rewrites what another uploaded.
const qUpsertIngestedRun = `INSERT INTO runs(id, job_id, status, started_at, ended_at, summary_json, error, ingested_at, ingested_by)
	VALUES (?,?,?,?,?,?,?,?,?)
	ON CONFLICT(id) DO UPDATE SET status = excluded.status, started_at = excluded.started_at, ended_at = excluded.ended_at,
		summary_json = excluded.summary_json, error = excluded.error
	WHERE runs.job_id = excluded.job_id AND runs.ingested_at IS NOT NULL AND runs.ingested_by = excluded.ingested_by
		AND runs.status NOT IN ('queued', 'running')
		AND NOT EXISTS (SELECT 1 FROM agent_tasks t WHERE t.run_id = excluded.id)`

// UpsertIngestedRun stores a run agentID executed while offline, marked ingested at now. Uploads
// are idempotent: the same run uploaded again by the same agent updates its outcome. It reports
// false, writing nothing, when the id belongs to a run of another job, to a run another agent
// uploaded or to a run the Hub tracked itself.
func (q Q) UpsertIngestedRun(ctx context.Context, r Run, agentID string, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, qUpsertIngestedRun,
		r.ID, r.JobID, r.Status, r.StartedAt, r.EndedAt, r.SummaryJSON, r.Error, now, agentID)
	if err != nil {
		return false, fmt.Errorf("ingest run %s: %w", r.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("ingest run %s: %w", r.ID, err)
	}
	return n == 1, nil
}

// InsertRunEventsIgnore stores events with the sequence numbers they carry, skipping any
// (run_id, seq) already stored: an upload repeated after a lost answer adds nothing.
func (q Q) InsertRunEventsIgnore(ctx context.Context, events []RunEvent) error {
	for _, e := range events {
		if _, err := q.ex.ExecContext(ctx, `INSERT OR IGNORE INTO run_events(run_id, seq, ts, level, kind, message, fields_json) VALUES (?,?,?,?,?,?,?)`,
			e.RunID, e.Seq, e.TS, e.Level, e.Kind, e.Message, e.FieldsJSON); err != nil {
			return fmt.Errorf("ingest events of run %s: %w", e.RunID, err)
		}
	}
	return nil
}

// RunIngested reports whether a run was uploaded by an agent (POST /agent/runs/ingest) rather
// than tracked by the Hub; ErrNotFound when there is no such run.
func (q Q) RunIngested(ctx context.Context, id string) (bool, error) {
	var ingested bool
	if err := q.ex.QueryRowContext(ctx, `SELECT ingested_at IS NOT NULL FROM runs WHERE id = ?`, id).Scan(&ingested); err != nil {
		return false, fmt.Errorf("read whether run %s was uploaded: %w", id, notFound(err))
	}
	return ingested, nil
}

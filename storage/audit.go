package storage

import (
	"context"
	"fmt"
	"strings"
)

// Actor kinds of an audit row.
const (
	ActorUser      = "user"
	ActorToken     = "token"
	ActorAgent     = "agent"
	ActorAnonymous = "anonymous"
)

// Outcomes of an audit row.
const (
	AuditOK     = "ok"
	AuditDenied = "denied"
	AuditError  = "error"
)

// AuditEntry is one row of the audit log. It never holds a request body, a password or a secret
// value: only who, from where, what route, on which object, and how it ended.
type AuditEntry struct {
	ID         int64
	At         int64 // unix seconds
	ActorKind  string
	UserID     *int64
	Username   *string // as it was then; filled from users when only UserID is known
	TokenID    *int64
	TokenName  *string
	ClientIP   string
	Action     string // "METHOD /route/{pattern}"
	ObjectKind *string
	ObjectID   *string
	RequestID  string
	Status     int
	Outcome    string
}

// AuditFilter narrows the audit list. Zero fields do not filter.
type AuditFilter struct {
	UserID   *int64
	Username string
	Action   string
	From     *int64 // at >= From
	To       *int64 // at < To
}

// AuditCursor is where an audit page ends: the (at, id) of its last row.
type AuditCursor struct {
	At int64
	ID int64
}

// The username of a user-less row's user id is looked up at insert, so a request authorised by a
// session that carries only the user id still names its user.
const qInsertAudit = `INSERT INTO audit_log(at, actor_kind, user_id, username, token_id, token_name, client_ip,
	action, object_kind, object_id, request_id, status, outcome)
	VALUES (?, ?, ?, COALESCE(?, (SELECT username FROM users WHERE id = ?)), ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// InsertAudit appends entries to the audit log.
func (q Q) InsertAudit(ctx context.Context, entries []AuditEntry) error {
	for _, e := range entries {
		if _, err := q.ex.ExecContext(ctx, qInsertAudit, e.At, e.ActorKind, e.UserID, e.Username, e.UserID, e.TokenID,
			e.TokenName, e.ClientIP, e.Action, e.ObjectKind, e.ObjectID, e.RequestID, e.Status, e.Outcome); err != nil {
			return fmt.Errorf("insert audit entry: %w", err)
		}
	}
	return nil
}

const auditColumns = `id, at, actor_kind, user_id, username, token_id, token_name, client_ip, action, object_kind,
	object_id, request_id, status, outcome`

// listAuditQuery builds the statement of ListAudit; the query plan test pins exactly it.
func listAuditQuery(f AuditFilter, after *AuditCursor, limit int) (string, []any) {
	var where []string
	var args []any
	if f.UserID != nil {
		where = append(where, "user_id = ?")
		args = append(args, *f.UserID)
	}
	if f.Username != "" {
		where = append(where, "username = ?")
		args = append(args, f.Username)
	}
	if f.Action != "" {
		where = append(where, "action = ?")
		args = append(args, f.Action)
	}
	if f.From != nil {
		where = append(where, "at >= ?")
		args = append(args, *f.From)
	}
	if f.To != nil {
		where = append(where, "at < ?")
		args = append(args, *f.To)
	}
	if after != nil {
		where = append(where, "(at, id) < (?, ?)")
		args = append(args, after.At, after.ID)
	}
	q := `SELECT ` + auditColumns + ` FROM audit_log`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY at DESC, id DESC LIMIT ?"
	return q, append(args, limit)
}

// ListAudit returns audit rows newest first by (at, id), after the cursor when one is given.
func (q Q) ListAudit(ctx context.Context, f AuditFilter, after *AuditCursor, limit int) ([]AuditEntry, error) {
	query, args := listAuditQuery(f, after, limit)
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		if err := rows.Scan(&e.ID, &e.At, &e.ActorKind, &e.UserID, &e.Username, &e.TokenID, &e.TokenName, &e.ClientIP,
			&e.Action, &e.ObjectKind, &e.ObjectID, &e.RequestID, &e.Status, &e.Outcome); err != nil {
			return nil, fmt.Errorf("list audit log: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit log: %w", err)
	}
	return out, nil
}

const qPruneAudit = `DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ? ORDER BY at LIMIT ?)`

// PruneAudit deletes up to limit audit rows older than before (unix seconds) and returns how
// many it deleted; callers repeat until fewer than limit go, so no pass holds the writer long.
func (q Q) PruneAudit(ctx context.Context, before int64, limit int) (int64, error) {
	res, err := q.ex.ExecContext(ctx, qPruneAudit, before, limit)
	if err != nil {
		return 0, fmt.Errorf("prune audit log: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune audit log: %w", err)
	}
	return n, nil
}

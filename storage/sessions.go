package storage

import (
	"context"
	"fmt"
)

// Session is a login session. ID is whatever the auth layer chooses to store (it may be a hash
// of the cookie value, so that a copy of the database does not hand out live sessions); it is a
// secret's stand-in and never shown. PublicID names the session in the API.
type Session struct {
	ID         string
	PublicID   string
	UserID     int64
	CSRFToken  string
	CreatedAt  int64
	ExpiresAt  int64
	LastSeenAt int64 // the login time until a request is made with the session
	ClientIP   string
	UserAgent  string
	// Username and Role are the owner's as the users row says now, filled by GetSession only:
	// a role change takes effect on the next request, whatever the session was opened with.
	Username string
	Role     string
}

const sessionColumns = `s.id, COALESCE(s.public_id, ''), s.user_id, s.csrf_token, s.created_at, s.expires_at,
	COALESCE(s.last_seen_at, s.created_at), s.client_ip, s.user_agent`

func scanSession(sc interface{ Scan(...any) error }) (Session, error) {
	var s Session
	err := sc.Scan(&s.ID, &s.PublicID, &s.UserID, &s.CSRFToken, &s.CreatedAt, &s.ExpiresAt, &s.LastSeenAt, &s.ClientIP, &s.UserAgent)
	return s, err
}

var qGetSession = `SELECT ` + sessionColumns + `, u.username, u.role
	FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ? AND s.expires_at > ?`

// InsertSession stores a new session.
func (q Q) InsertSession(ctx context.Context, s Session) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO sessions(id, public_id, user_id, csrf_token, created_at, expires_at,
		last_seen_at, client_ip, user_agent) VALUES (?, NULLIF(?, ''), ?, ?, ?, ?, ?, ?, ?)`,
		s.ID, s.PublicID, s.UserID, s.CSRFToken, s.CreatedAt, s.ExpiresAt, s.CreatedAt, s.ClientIP, s.UserAgent)
	if err != nil {
		return fmt.Errorf("insert session: %w", err)
	}
	return nil
}

// TrimSessions deletes the user's expired sessions and then the oldest live ones beyond keep, so
// that at most keep remain. It returns how many live sessions it evicted.
func (q Q) TrimSessions(ctx context.Context, userID int64, keep int, now int64) (int64, error) {
	if _, err := q.ex.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ? AND expires_at <= ?`, userID, now); err != nil {
		return 0, fmt.Errorf("trim sessions: delete expired: %w", err)
	}
	res, err := q.ex.ExecContext(ctx, `DELETE FROM sessions WHERE id IN (
		SELECT id FROM sessions WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)`, userID, keep)
	if err != nil {
		return 0, fmt.Errorf("trim sessions: evict oldest: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// GetSession returns the session if it exists and has not expired at now; an expired session is
// reported as ErrNotFound, exactly like a missing one.
func (q Q) GetSession(ctx context.Context, id string, now int64) (Session, error) {
	var s Session
	err := q.ex.QueryRowContext(ctx, qGetSession, id, now).Scan(&s.ID, &s.PublicID, &s.UserID, &s.CSRFToken,
		&s.CreatedAt, &s.ExpiresAt, &s.LastSeenAt, &s.ClientIP, &s.UserAgent, &s.Username, &s.Role)
	if err != nil {
		return Session{}, fmt.Errorf("get session: %w", notFound(err))
	}
	return s, nil
}

// ListSessions returns the user's live sessions at now, newest first.
func (q Q) ListSessions(ctx context.Context, userID, now int64) ([]Session, error) {
	rows, err := q.ex.QueryContext(ctx, `SELECT `+sessionColumns+` FROM sessions s
		WHERE s.user_id = ? AND s.expires_at > ? ORDER BY s.created_at DESC, s.rowid DESC`, userID, now)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// TouchSession records that the session was used at now.
func (q Q) TouchSession(ctx context.Context, id string, now int64) error {
	if _, err := q.ex.ExecContext(ctx, "UPDATE sessions SET last_seen_at = ? WHERE id = ?", now, id); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// DeleteSession removes a session; a missing one is not an error.
func (q Q) DeleteSession(ctx context.Context, id string) error {
	if _, err := q.ex.ExecContext(ctx, "DELETE FROM sessions WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteUserSession removes the user's session named publicID; a session that does not exist or
// belongs to another user is ErrNotFound.
func (q Q) DeleteUserSession(ctx context.Context, userID int64, publicID string) error {
	res, err := q.ex.ExecContext(ctx, "DELETE FROM sessions WHERE user_id = ? AND public_id = ?", userID, publicID)
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("delete session: %w", ErrNotFound)
	}
	return nil
}

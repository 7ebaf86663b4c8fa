package storage

import (
	"context"
	"fmt"
)

// Session is a login session. ID is whatever the auth layer chooses to store (it may be a hash
// of the cookie value, so that a copy of the database does not hand out live sessions).
type Session struct {
	ID        string
	UserID    int64
	CSRFToken string
	CreatedAt int64
	ExpiresAt int64
}

const qGetSession = `SELECT id, user_id, csrf_token, created_at, expires_at FROM sessions WHERE id = ? AND expires_at > ?`

// InsertSession stores a new session.
func (q Q) InsertSession(ctx context.Context, s Session) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO sessions(id, user_id, csrf_token, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?)`, s.ID, s.UserID, s.CSRFToken, s.CreatedAt, s.ExpiresAt)
	if err != nil {
		return fmt.Errorf("insert session: %w", err)
	}
	return nil
}

// GetSession returns the session if it exists and has not expired at now; an expired session is
// reported as ErrNotFound, exactly like a missing one.
func (q Q) GetSession(ctx context.Context, id string, now int64) (Session, error) {
	var s Session
	err := q.ex.QueryRowContext(ctx, qGetSession, id, now).Scan(&s.ID, &s.UserID, &s.CSRFToken, &s.CreatedAt, &s.ExpiresAt)
	if err != nil {
		return Session{}, fmt.Errorf("get session: %w", notFound(err))
	}
	return s, nil
}

// DeleteSession removes a session; a missing one is not an error.
func (q Q) DeleteSession(ctx context.Context, id string) error {
	if _, err := q.ex.ExecContext(ctx, "DELETE FROM sessions WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

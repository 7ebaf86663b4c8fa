package storage

import (
	"context"
	"fmt"
)

// APIToken is a bearer token for scripts. Hash is the SHA-256 the auth layer stores in place of
// the token; ExpiresAt and LastUsedAt are 0 when unset. CreatedByName is filled by ListAPITokens
// and GetAPITokenByHash; CreatorRole, by GetAPITokenByHash only (the creator's role now).
type APIToken struct {
	ID            int64
	Name          string
	Hash          string
	Role          string
	CreatedBy     int64
	CreatedByName string
	CreatorRole   string
	CreatedAt     int64
	ExpiresAt     int64
	LastUsedAt    int64
}

// InsertAPIToken stores a new token and returns its id.
func (q Q) InsertAPIToken(ctx context.Context, t APIToken) (int64, error) {
	res, err := q.ex.ExecContext(ctx, `INSERT INTO api_tokens(name, token_hash, role, created_by, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, NULLIF(?, 0))`, t.Name, t.Hash, t.Role, t.CreatedBy, t.CreatedAt, t.ExpiresAt)
	if err != nil {
		return 0, fmt.Errorf("insert api token: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("insert api token: %w", err)
	}
	return id, nil
}

const apiTokenColumns = `t.id, t.name, t.token_hash, t.role, t.created_by, u.username, u.role, t.created_at,
	COALESCE(t.expires_at, 0), COALESCE(t.last_used_at, 0)`

func scanAPIToken(sc interface{ Scan(...any) error }) (APIToken, error) {
	var t APIToken
	err := sc.Scan(&t.ID, &t.Name, &t.Hash, &t.Role, &t.CreatedBy, &t.CreatedByName, &t.CreatorRole, &t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt)
	return t, err
}

// GetAPITokenByHash returns the token stored under hash if it has not expired at now; an expired
// or unknown token is ErrNotFound.
func (q Q) GetAPITokenByHash(ctx context.Context, hash string, now int64) (APIToken, error) {
	t, err := scanAPIToken(q.ex.QueryRowContext(ctx, `SELECT `+apiTokenColumns+`
		FROM api_tokens t JOIN users u ON u.id = t.created_by
		WHERE t.token_hash = ? AND (t.expires_at IS NULL OR t.expires_at > ?)`, hash, now))
	if err != nil {
		return APIToken{}, fmt.Errorf("get api token: %w", notFound(err))
	}
	return t, nil
}

// ListAPITokens returns every token, newest first. The hashes are read but callers never show
// them.
func (q Q) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	rows, err := q.ex.QueryContext(ctx, `SELECT `+apiTokenColumns+`
		FROM api_tokens t JOIN users u ON u.id = t.created_by ORDER BY t.created_at DESC, t.id DESC`)
	if err != nil {
		return nil, fmt.Errorf("list api tokens: %w", err)
	}
	defer rows.Close()
	var out []APIToken
	for rows.Next() {
		t, err := scanAPIToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list api tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list api tokens: %w", err)
	}
	return out, nil
}

// DeleteAPIToken revokes a token; a missing one is ErrNotFound.
func (q Q) DeleteAPIToken(ctx context.Context, id int64) error {
	res, err := q.ex.ExecContext(ctx, `DELETE FROM api_tokens WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete api token %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("delete api token %d: %w", id, ErrNotFound)
	}
	return nil
}

// TouchAPIToken records that the token was used at now.
func (q Q) TouchAPIToken(ctx context.Context, id, now int64) error {
	if _, err := q.ex.ExecContext(ctx, `UPDATE api_tokens SET last_used_at = ? WHERE id = ?`, now, id); err != nil {
		return fmt.Errorf("touch api token %d: %w", id, err)
	}
	return nil
}

// DeleteUserAPITokens revokes every token a user created (a password change ends them, as it ends
// the user's sessions) and returns how many there were.
func (q Q) DeleteUserAPITokens(ctx context.Context, userID int64) (int64, error) {
	res, err := q.ex.ExecContext(ctx, `DELETE FROM api_tokens WHERE created_by = ?`, userID)
	if err != nil {
		return 0, fmt.Errorf("delete api tokens of user %d: %w", userID, err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

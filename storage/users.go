package storage

import (
	"context"
	"fmt"
)

// User is an administrator account.
type User struct {
	ID           int64
	Username     string
	PasswordHash string
	CreatedAt    int64
	UpdatedAt    int64
}

// CountUsers returns how many users exist; zero means the Hub still needs setup.
func (q Q) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := q.ex.QueryRowContext(ctx, "SELECT COUNT(*) FROM users").Scan(&n); err != nil {
		return 0, fmt.Errorf("count users: %w", err)
	}
	return n, nil
}

// CreateFirstUser inserts the first user in one conditional statement, so that of two racing
// setups exactly one succeeds. It reports false when a user already existed.
func (q Q) CreateFirstUser(ctx context.Context, username, passwordHash string, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `INSERT INTO users(username, password_hash, created_at, updated_at)
		SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM users)`, username, passwordHash, now, now)
	if err != nil {
		return false, fmt.Errorf("create first user: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("create first user: %w", err)
	}
	return n == 1, nil
}

// GetUserByUsername returns the user or ErrNotFound.
func (q Q) GetUserByUsername(ctx context.Context, username string) (User, error) {
	var u User
	err := q.ex.QueryRowContext(ctx, `SELECT id, username, password_hash, created_at, updated_at
		FROM users WHERE username = ?`, username).Scan(&u.ID, &u.Username, &u.PasswordHash, &u.CreatedAt, &u.UpdatedAt)
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", notFound(err))
	}
	return u, nil
}

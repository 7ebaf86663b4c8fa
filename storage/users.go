package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/mattn/go-sqlite3"
)

// User is a Hub account. Role is "admin", "operator" or "viewer" (the users table's CHECK).
type User struct {
	ID           int64
	Username     string
	PasswordHash string
	Role         string
	CreatedAt    int64
	UpdatedAt    int64
}

var (
	// ErrUsernameTaken is returned when a user with that username already exists.
	ErrUsernameTaken = errors.New("username taken")
	// ErrLastAdmin is returned when a change would leave the Hub without an administrator.
	ErrLastAdmin = errors.New("last administrator")
)

const userColumns = `id, username, password_hash, role, created_at, updated_at`

func scanUser(sc interface{ Scan(...any) error }) (User, error) {
	var u User
	err := sc.Scan(&u.ID, &u.Username, &u.PasswordHash, &u.Role, &u.CreatedAt, &u.UpdatedAt)
	return u, err
}

// CountUsers returns how many users exist; zero means the Hub still needs setup.
func (q Q) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := q.ex.QueryRowContext(ctx, "SELECT COUNT(*) FROM users").Scan(&n); err != nil {
		return 0, fmt.Errorf("count users: %w", err)
	}
	return n, nil
}

// CreateFirstUser inserts the first user, an administrator, in one conditional statement, so that
// of two racing setups exactly one succeeds. It reports false when a user already existed.
func (q Q) CreateFirstUser(ctx context.Context, username, passwordHash string, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `INSERT INTO users(username, password_hash, role, created_at, updated_at)
		SELECT ?, ?, 'admin', ?, ? WHERE NOT EXISTS (SELECT 1 FROM users)`, username, passwordHash, now, now)
	if err != nil {
		return false, fmt.Errorf("create first user: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("create first user: %w", err)
	}
	return n == 1, nil
}

// CreateUser inserts a user and returns it; a username in use is ErrUsernameTaken.
func (q Q) CreateUser(ctx context.Context, username, passwordHash, role string, now int64) (User, error) {
	res, err := q.ex.ExecContext(ctx, `INSERT INTO users(username, password_hash, role, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?)`, username, passwordHash, role, now, now)
	if isUnique(err) {
		return User{}, fmt.Errorf("create user: %w", ErrUsernameTaken)
	}
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	return User{ID: id, Username: username, PasswordHash: passwordHash, Role: role, CreatedAt: now, UpdatedAt: now}, nil
}

// GetUserByUsername returns the user or ErrNotFound.
func (q Q) GetUserByUsername(ctx context.Context, username string) (User, error) {
	u, err := scanUser(q.ex.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE username = ?`, username))
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", notFound(err))
	}
	return u, nil
}

// GetUser returns the user or ErrNotFound.
func (q Q) GetUser(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(q.ex.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	if err != nil {
		return User{}, fmt.Errorf("get user %d: %w", id, notFound(err))
	}
	return u, nil
}

// ListUsers returns every user, by username.
func (q Q) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := q.ex.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY username, id`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

// lastAdminGuard is true for a user whose loss of the admin role would leave no administrator.
const lastAdminGuard = `role = 'admin' AND (SELECT COUNT(*) FROM users WHERE role = 'admin') <= 1`

// SetUserRole changes a user's role. Demoting the only administrator is ErrLastAdmin, decided in
// the UPDATE itself, so that two demotions racing cannot both pass; a missing user is
// ErrNotFound.
func (q Q) SetUserRole(ctx context.Context, id int64, role string, now int64) error {
	res, err := q.ex.ExecContext(ctx, `UPDATE users SET role = ?, updated_at = ?
		WHERE id = ? AND (? = 'admin' OR NOT (`+lastAdminGuard+`))`, role, now, id, role)
	if err != nil {
		return fmt.Errorf("set role of user %d: %w", id, err)
	}
	return q.userChangeResult(ctx, res, id, "set role of user")
}

// SetUserPassword replaces a user's password hash; a missing user is ErrNotFound.
func (q Q) SetUserPassword(ctx context.Context, id int64, passwordHash string, now int64) error {
	res, err := q.ex.ExecContext(ctx, `UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?`, passwordHash, now, id)
	if err != nil {
		return fmt.Errorf("set password of user %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("set password of user %d: %w", id, ErrNotFound)
	}
	return nil
}

// DeleteUser removes a user, and with it (ON DELETE CASCADE) their sessions and API tokens.
// Deleting the only administrator is ErrLastAdmin, decided in the DELETE itself.
func (q Q) DeleteUser(ctx context.Context, id int64) error {
	res, err := q.ex.ExecContext(ctx, `DELETE FROM users WHERE id = ? AND NOT (`+lastAdminGuard+`)`, id)
	if err != nil {
		return fmt.Errorf("delete user %d: %w", id, err)
	}
	return q.userChangeResult(ctx, res, id, "delete user")
}

// userChangeResult tells apart, for a guarded statement that changed no row, a missing user from
// the last administrator. Run inside the write transaction, the answer is the one the statement
// saw.
func (q Q) userChangeResult(ctx context.Context, res interface{ RowsAffected() (int64, error) }, id int64, what string) error {
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	var exists bool
	if err := q.ex.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)`, id).Scan(&exists); err != nil {
		return fmt.Errorf("%s %d: %w", what, id, err)
	}
	if !exists {
		return fmt.Errorf("%s %d: %w", what, id, ErrNotFound)
	}
	return fmt.Errorf("%s %d: %w", what, id, ErrLastAdmin)
}

// DeleteUserSessions ends every session of a user, except keepID when it is not empty (the
// session that changed its own password stays logged in).
func (q Q) DeleteUserSessions(ctx context.Context, userID int64, keepID string) error {
	if _, err := q.ex.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ? AND id != ?`, userID, keepID); err != nil {
		return fmt.Errorf("delete sessions of user %d: %w", userID, err)
	}
	return nil
}

func isUnique(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique
}

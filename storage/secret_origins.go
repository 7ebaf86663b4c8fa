package storage

import (
	"context"
	"fmt"
)

// SecretOrigins returns the origins (scheme://host:port) the secret may be sent to, sorted; empty
// when it is bound to none. The secret itself need not exist.
func (q Q) SecretOrigins(ctx context.Context, node, kind, name string) ([]string, error) {
	rows, err := q.ex.QueryContext(ctx, `SELECT origin FROM secret_origins
		WHERE secret_kind = ? AND node_id = ? AND secret_name = ? ORDER BY origin`, kind, node, name)
	if err != nil {
		return nil, fmt.Errorf("read origins of secret %s/%s: %w", kind, name, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			return nil, fmt.Errorf("read origins of secret %s/%s: %w", kind, name, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read origins of secret %s/%s: %w", kind, name, err)
	}
	return out, nil
}

// SetSecretOrigins replaces the origins of an existing secret with origins (none: unbound).
func (q Q) SetSecretOrigins(ctx context.Context, node, kind, name string, origins []string, now int64) error {
	if _, err := q.ex.ExecContext(ctx, `DELETE FROM secret_origins WHERE secret_kind = ? AND node_id = ? AND secret_name = ?`,
		kind, node, name); err != nil {
		return fmt.Errorf("replace origins of secret %s/%s: %w", kind, name, err)
	}
	return q.AddSecretOrigins(ctx, node, kind, name, origins, now)
}

// AddSecretOrigins allows origins for an existing secret besides those it has.
func (q Q) AddSecretOrigins(ctx context.Context, node, kind, name string, origins []string, now int64) error {
	for _, o := range origins {
		if _, err := q.ex.ExecContext(ctx, `INSERT OR IGNORE INTO secret_origins(node_id, secret_kind, secret_name, origin, created_at)
			VALUES (?, ?, ?, ?, ?)`, node, kind, name, o, now); err != nil {
			return fmt.Errorf("bind secret %s/%s to %s: %w", kind, name, o, err)
		}
	}
	return nil
}

// BindSecretOriginIfUnbound binds a secret that has no origin yet to origin, in one statement, and
// reports whether it did. A secret already bound (to anything) is left alone.
func (q Q) BindSecretOriginIfUnbound(ctx context.Context, node, kind, name, origin string, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `INSERT OR IGNORE INTO secret_origins(node_id, secret_kind, secret_name, origin, created_at)
		SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM secret_origins
			WHERE secret_kind = ? AND node_id = ? AND secret_name = ?)
		AND EXISTS (SELECT 1 FROM secrets WHERE kind = ? AND node_id = ? AND name = ?)`,
		node, kind, name, origin, now, kind, node, name, kind, node, name)
	if err != nil {
		return false, fmt.Errorf("bind secret %s/%s to %s: %w", kind, name, origin, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("bind secret %s/%s to %s: %w", kind, name, origin, err)
	}
	return n > 0, nil
}

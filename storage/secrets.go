package storage

import (
	"context"
	"fmt"
)

// SecretRow is one encrypted secret as stored: the ciphertext of its payload under key KID,
// bound to (NodeID, Kind, Name). This package never sees plaintext.
type SecretRow struct {
	ID         string
	NodeID     string
	Kind       string
	Name       string
	KID        int64
	Nonce      []byte
	Ciphertext []byte
	CreatedAt  int64
	UpdatedAt  int64
}

// SecretMeta is what a secret listing shows: never the payload.
type SecretMeta struct {
	Name      string
	UpdatedAt int64
}

const (
	qGetSecret = `SELECT id, node_id, kind, name, kid, nonce, ciphertext, created_at, updated_at
		FROM secrets WHERE kind = ? AND node_id = ? AND name = ?`
	qListSecrets    = `SELECT name, updated_at FROM secrets WHERE node_id = ? AND kind = ? ORDER BY name`
	qSecretKIDs     = `SELECT kid, COUNT(*) FROM secrets GROUP BY kid ORDER BY kid`
	qSecretsWithKID = `SELECT id, node_id, kind, name, kid, nonce, ciphertext, created_at, updated_at
		FROM secrets WHERE kid = ? ORDER BY updated_at DESC LIMIT ?`
)

// GetSecret returns the secret (node, kind, name) or ErrNotFound.
func (q Q) GetSecret(ctx context.Context, node, kind, name string) (SecretRow, error) {
	var s SecretRow
	err := q.ex.QueryRowContext(ctx, qGetSecret, kind, node, name).Scan(&s.ID, &s.NodeID, &s.Kind, &s.Name,
		&s.KID, &s.Nonce, &s.Ciphertext, &s.CreatedAt, &s.UpdatedAt)
	if err != nil {
		return SecretRow{}, fmt.Errorf("get secret %s/%s: %w", kind, name, notFound(err))
	}
	return s, nil
}

// UpsertSecret inserts s, or replaces the key id, nonce, ciphertext and updated_at of the
// existing secret with the same (kind, node, name), keeping its id and created_at.
func (q Q) UpsertSecret(ctx context.Context, s SecretRow) error {
	_, err := q.ex.ExecContext(ctx, `INSERT INTO secrets(id, node_id, kind, name, kid, nonce, ciphertext, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(kind, node_id, name) DO UPDATE SET kid = excluded.kid, nonce = excluded.nonce,
			ciphertext = excluded.ciphertext, updated_at = excluded.updated_at`,
		s.ID, s.NodeID, s.Kind, s.Name, s.KID, s.Nonce, s.Ciphertext, s.CreatedAt, s.UpdatedAt)
	if err != nil {
		return fmt.Errorf("upsert secret %s/%s: %w", s.Kind, s.Name, err)
	}
	return nil
}

// ListSecrets returns the names and update times of node's secrets of kind, by name.
func (q Q) ListSecrets(ctx context.Context, node, kind string) ([]SecretMeta, error) {
	rows, err := q.ex.QueryContext(ctx, qListSecrets, node, kind)
	if err != nil {
		return nil, fmt.Errorf("list %s secrets: %w", kind, err)
	}
	defer rows.Close()
	out := []SecretMeta{}
	for rows.Next() {
		var m SecretMeta
		if err := rows.Scan(&m.Name, &m.UpdatedAt); err != nil {
			return nil, fmt.Errorf("list %s secrets: %w", kind, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s secrets: %w", kind, err)
	}
	return out, nil
}

// DeleteSecret removes the secret and reports whether it existed. Notification destinations of
// the secret go with it (foreign key cascade).
func (q Q) DeleteSecret(ctx context.Context, node, kind, name string) (bool, error) {
	res, err := q.ex.ExecContext(ctx, "DELETE FROM secrets WHERE kind = ? AND node_id = ? AND name = ?", kind, node, name)
	if err != nil {
		return false, fmt.Errorf("delete secret %s/%s: %w", kind, name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("delete secret %s/%s: %w", kind, name, err)
	}
	return n > 0, nil
}

// SecretKIDs counts stored secrets per key id: which keys of master.key the database needs.
func (q Q) SecretKIDs(ctx context.Context) (map[int64]int, error) {
	rows, err := q.ex.QueryContext(ctx, qSecretKIDs)
	if err != nil {
		return nil, fmt.Errorf("count secrets by key id: %w", err)
	}
	defer rows.Close()
	out := map[int64]int{}
	for rows.Next() {
		var kid int64
		var n int
		if err := rows.Scan(&kid, &n); err != nil {
			return nil, fmt.Errorf("count secrets by key id: %w", err)
		}
		out[kid] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count secrets by key id: %w", err)
	}
	return out, nil
}

// SecretsWithKID returns up to limit secrets encrypted under kid, most recently updated first.
func (q Q) SecretsWithKID(ctx context.Context, kid int64, limit int) ([]SecretRow, error) {
	rows, err := q.ex.QueryContext(ctx, qSecretsWithKID, kid, limit)
	if err != nil {
		return nil, fmt.Errorf("list secrets with key id %d: %w", kid, err)
	}
	defer rows.Close()
	var out []SecretRow
	for rows.Next() {
		var s SecretRow
		if err := rows.Scan(&s.ID, &s.NodeID, &s.Kind, &s.Name, &s.KID, &s.Nonce, &s.Ciphertext, &s.CreatedAt, &s.UpdatedAt); err != nil {
			return nil, fmt.Errorf("list secrets with key id %d: %w", kid, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list secrets with key id %d: %w", kid, err)
	}
	return out, nil
}

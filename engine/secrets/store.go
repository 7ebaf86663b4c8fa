package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/storage"
)

// ErrNotFound is returned for a secret that does not exist. It matches storage.ErrNotFound too.
var ErrNotFound = fmt.Errorf("secret %w", storage.ErrNotFound)

// Store keeps secrets encrypted in the database under a Keyring. Payloads go in and come out as
// plaintext JSON; only ciphertext is stored. Safe for concurrent use.
type Store struct {
	db    *storage.DB
	keys  *Keyring
	clock clock.Clock
}

// NewStore returns a Store over db encrypting with keys; clk stamps created_at/updated_at.
func NewStore(db *storage.DB, keys *Keyring, clk clock.Clock) *Store {
	return &Store{db: db, keys: keys, clock: clk}
}

// Meta is a secret as listed: never its payload.
type Meta struct {
	Name      string `json:"name"`
	UpdatedAt int64  `json:"updated_at"`
}

// Put encrypts payload and stores it as (node, kind, name), replacing any previous value. The
// caller validates payload (DecodePayload) and name (ValidateName).
func (s *Store) Put(ctx context.Context, node, kind, name string, payload []byte) error {
	row, err := s.seal(node, kind, name, payload)
	if err != nil {
		return err
	}
	return s.db.Writer().UpsertSecret(ctx, row)
}

func (s *Store) seal(node, kind, name string, payload []byte) (storage.SecretRow, error) {
	sealed, err := s.keys.Seal(node, kind, name, payload)
	if err != nil {
		return storage.SecretRow{}, err
	}
	now := s.clock.Now().Unix()
	return storage.SecretRow{
		ID: uuid.NewString(), NodeID: node, Kind: kind, Name: name,
		KID: int64(sealed.KID), Nonce: sealed.Nonce, Ciphertext: sealed.Ciphertext,
		CreatedAt: now, UpdatedAt: now,
	}, nil
}

// Get returns the decrypted payload of (node, kind, name): ErrNotFound when there is none, a
// *DecryptError (matching ErrUndecryptable) naming the secret when it cannot be decrypted.
func (s *Store) Get(ctx context.Context, node, kind, name string) ([]byte, error) {
	row, err := s.db.Reader().GetSecret(ctx, node, kind, name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("get secret %s/%s: %w", kind, name, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return s.keys.Open(node, kind, name, sealedOf(row))
}

// GetJSON decrypts (node, kind, name) into v, e.g. a *WebDAV.
func (s *Store) GetJSON(ctx context.Context, node, kind, name string, v any) error {
	raw, err := s.Get(ctx, node, kind, name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		// json errors can quote the input; the input is a credential.
		return fmt.Errorf("decode secret %s/%s: payload is not valid JSON for %T", kind, name, v)
	}
	return nil
}

// WebDAV returns the WebDAV credential name of node.
func (s *Store) WebDAV(ctx context.Context, node, name string) (WebDAV, error) {
	var p WebDAV
	return p, s.GetJSON(ctx, node, KindWebDAV, name, &p)
}

// List returns node's secrets of kind by name, without payloads.
func (s *Store) List(ctx context.Context, node, kind string) ([]Meta, error) {
	rows, err := s.db.Reader().ListSecrets(ctx, node, kind)
	if err != nil {
		return nil, err
	}
	out := make([]Meta, len(rows))
	for i, r := range rows {
		out[i] = Meta{Name: r.Name, UpdatedAt: r.UpdatedAt}
	}
	return out, nil
}

// Delete removes (node, kind, name); ErrNotFound when it did not exist.
func (s *Store) Delete(ctx context.Context, node, kind, name string) error {
	ok, err := s.db.Writer().DeleteSecret(ctx, node, kind, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("delete secret %s/%s: %w", kind, name, ErrNotFound)
	}
	return nil
}

// GetOrCreate returns the payload of (node, kind, name), first storing create()'s result if the
// secret does not exist, in one write transaction: two callers racing get the same payload
// (an age identity "created on first use" must be created once). create runs inside the
// transaction: keep it to CPU work.
func (s *Store) GetOrCreate(ctx context.Context, node, kind, name string, create func() ([]byte, error)) ([]byte, error) {
	var out []byte
	err := s.db.Write(ctx, func(q storage.Q) error {
		row, err := q.GetSecret(ctx, node, kind, name)
		if err == nil {
			out, err = s.keys.Open(node, kind, name, sealedOf(row))
			return err
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		payload, err := create()
		if err != nil {
			return fmt.Errorf("create secret %s/%s: %w", kind, name, err)
		}
		row, err = s.seal(node, kind, name, payload)
		if err != nil {
			return err
		}
		out = payload
		return q.UpsertSecret(ctx, row)
	})
	return out, err
}

// Keyring is the keyring the store encrypts with.
func (s *Store) Keyring() *Keyring { return s.keys }

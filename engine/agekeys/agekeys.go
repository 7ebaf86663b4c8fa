// Package agekeys gives backups and restores their age X25519 keys. A job's spec names a key
// ("key_name"); the Hub creates that key's identity the first time a backup needs it and keeps
// it as an encrypted secret of kind backup_age_identity (node hub), whose payload is the identity
// string "AGE-SECRET-KEY-1…" as the original stores it, so its databases keep working.
//
// Losing the secret (or master.key) makes every snapshot encrypted with it unreadable: operators
// back up master.key and the database together (see docs/snapshots-and-restore.md).
package agekeys

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"filippo.io/age"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/storage"
)

// Store is the part of the encrypted secrets store (engine/secrets.Store) keys need.
type Store interface {
	Get(ctx context.Context, node, kind, name string) ([]byte, error)
	// GetOrCreate returns the payload, storing create()'s result first when there is none, in
	// one transaction: two backups racing on a new key name end up with the same key.
	GetOrCreate(ctx context.Context, node, kind, name string, create func() ([]byte, error)) ([]byte, error)
}

// ErrNoIdentity is matched by the error of Identity for a key name the Hub has no key for.
var ErrNoIdentity = errors.New("no age identity with this key name")

// Keys implements backup.KeyProvider and restore.IdentityProvider for one node's keys.
type Keys struct {
	store Store
	node  string
}

// New returns the Hub's keys.
func New(store Store) *Keys { return &Keys{store: store, node: secrets.HubNode} }

// Recipient returns the public key of keyName, creating the key on first use.
func (k *Keys) Recipient(ctx context.Context, keyName string) (age.Recipient, error) {
	name, err := checkName(keyName)
	if err != nil {
		return nil, err
	}
	raw, err := k.store.GetOrCreate(ctx, k.node, secrets.KindBackupAgeIdentity, name, func() ([]byte, error) {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return nil, fmt.Errorf("generate age identity: %w", err)
		}
		return []byte(id.String()), nil
	})
	if err != nil {
		return nil, fmt.Errorf("age key %q: %w", name, err)
	}
	id, err := parse(name, raw)
	if err != nil {
		return nil, err
	}
	return id.Recipient(), nil
}

// Identity returns the private key of keyName; it never creates one (ErrNoIdentity).
func (k *Keys) Identity(ctx context.Context, keyName string) (age.Identity, error) {
	name, err := checkName(keyName)
	if err != nil {
		return nil, err
	}
	raw, err := k.store.Get(ctx, k.node, secrets.KindBackupAgeIdentity, name)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) { // engine/secrets.ErrNotFound wraps it
			return nil, fmt.Errorf("age key %q: %w", name, ErrNoIdentity)
		}
		return nil, fmt.Errorf("age key %q: %w", name, err)
	}
	return parse(name, raw)
}

func checkName(keyName string) (string, error) {
	name := strings.TrimSpace(keyName)
	if err := secrets.ValidateName(name); err != nil {
		return "", fmt.Errorf("age key name %q: %w", keyName, err)
	}
	return name, nil
}

// parse reads a stored identity. Its error never quotes the payload.
func parse(name string, raw []byte) (*age.X25519Identity, error) {
	id, err := age.ParseX25519Identity(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("age key %q: the stored identity is not an age X25519 secret key", name)
	}
	return id, nil
}

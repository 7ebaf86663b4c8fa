package testtool

import (
	"context"
	"fmt"
	"sync"

	"filippo.io/age"
)

// AgeKeys is an in-memory age key store for tests and benchmarks: one X25519 identity per key
// name, created by the first Recipient call as engine/agekeys does. It serves as both
// backup.KeyProvider and restore.IdentityProvider. The zero value is ready to use.
type AgeKeys struct {
	mu  sync.Mutex
	ids map[string]*age.X25519Identity
}

// Set makes id the identity of name (a key made elsewhere, such as by the age CLI).
func (k *AgeKeys) Set(name string, id *age.X25519Identity) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ids == nil {
		k.ids = map[string]*age.X25519Identity{}
	}
	k.ids[name] = id
}

// Recipient returns the public key of name, creating the key on first use.
func (k *AgeKeys) Recipient(_ context.Context, name string) (age.Recipient, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if id, ok := k.ids[name]; ok {
		return id.Recipient(), nil
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate age identity: %w", err)
	}
	if k.ids == nil {
		k.ids = map[string]*age.X25519Identity{}
	}
	k.ids[name] = id
	return id.Recipient(), nil
}

// Identity returns the private key of name; it never creates one.
func (k *AgeKeys) Identity(_ context.Context, name string) (age.Identity, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	id, ok := k.ids[name]
	if !ok {
		return nil, fmt.Errorf("no age key named %q", name)
	}
	return id, nil
}

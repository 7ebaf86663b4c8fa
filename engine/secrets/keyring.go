package secrets

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeyringVersion is the only master.key format there is.
const KeyringVersion = 1

const (
	keyLen       = 32
	subkeyInfo   = "secrets-v1"
	maxKeyringID = 1<<31 - 1
)

// ErrCorruptKeyring marks a master.key (or keypack content) that does not parse as a valid
// keyring. Its messages never include key material.
var ErrCorruptKeyring = errors.New("invalid keyring")

// Keyring is the set of master keys secrets are encrypted under: new secrets use the active
// key, old ones keep naming the key they were written with. A Keyring is immutable and safe for
// concurrent use.
type Keyring struct {
	active uint32
	keys   map[uint32]keyEntry
}

type keyEntry struct {
	key       [keyLen]byte
	createdAt int64
	aead      cipher.AEAD // XChaCha20-Poly1305 under HKDF(key)
}

// keyringFile is the JSON of master.key, as the original writes it.
type keyringFile struct {
	Version   int            `json:"version"`
	ActiveKID uint32         `json:"active_kid"`
	Keys      []keyFileEntry `json:"keys"`
}

type keyFileEntry struct {
	KID       uint32 `json:"kid"`
	KeyB64    string `json:"key_b64"`
	CreatedAt int64  `json:"created_at"`
}

// NewKeyring generates a keyring with one random key, kid 1.
func NewKeyring(now time.Time) (*Keyring, error) {
	k := &Keyring{keys: map[uint32]keyEntry{}}
	if err := k.addRandom(1, now); err != nil {
		return nil, err
	}
	k.active = 1
	return k, nil
}

// Rotate returns a keyring with a new random key, kid max+1, as the active key; every old key
// stays so that secrets written under it remain readable.
func (k *Keyring) Rotate(now time.Time) (*Keyring, error) {
	next := &Keyring{active: k.active, keys: make(map[uint32]keyEntry, len(k.keys)+1)}
	for kid, e := range k.keys {
		next.keys[kid] = e
	}
	kid := slices.Max(k.KIDs()) + 1
	if kid > maxKeyringID {
		return nil, fmt.Errorf("rotate master key: key ids exhausted")
	}
	if err := next.addRandom(kid, now); err != nil {
		return nil, err
	}
	next.active = kid
	return next, nil
}

func (k *Keyring) addRandom(kid uint32, now time.Time) error {
	var key [keyLen]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("generate master key: %w", err)
	}
	e, err := newEntry(key, now.Unix())
	if err != nil {
		return err
	}
	k.keys[kid] = e
	return nil
}

func newEntry(key [keyLen]byte, createdAt int64) (keyEntry, error) {
	sub, err := hkdf.Key(sha256.New, key[:], nil, subkeyInfo, chacha20poly1305.KeySize)
	if err != nil {
		return keyEntry{}, fmt.Errorf("derive secrets key: %w", err)
	}
	aead, err := chacha20poly1305.NewX(sub)
	if err != nil {
		return keyEntry{}, fmt.Errorf("derive secrets key: %w", err)
	}
	return keyEntry{key: key, createdAt: createdAt, aead: aead}, nil
}

// ActiveKID is the key id new secrets are encrypted under.
func (k *Keyring) ActiveKID() uint32 { return k.active }

// KIDs lists the key ids, ascending.
func (k *Keyring) KIDs() []uint32 {
	out := make([]uint32, 0, len(k.keys))
	for kid := range k.keys {
		out = append(out, kid)
	}
	slices.Sort(out)
	return out
}

// Has reports whether the keyring holds kid.
func (k *Keyring) Has(kid uint32) bool { _, ok := k.keys[kid]; return ok }

// ParseKeyring reads master.key JSON. It refuses anything but a version-1 keyring whose keys are
// 32 bytes, whose kids are unique and positive, and whose active kid is one of them. Errors wrap
// ErrCorruptKeyring and never include key material.
func ParseKeyring(data []byte) (*Keyring, error) {
	var f keyringFile
	if err := json.Unmarshal(data, &f); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("%w: not valid JSON (at byte %d)", ErrCorruptKeyring, se.Offset)
		case errors.As(err, &te):
			return nil, fmt.Errorf("%w: field %q must be %s", ErrCorruptKeyring, te.Field, te.Type)
		}
		return nil, fmt.Errorf("%w: not valid JSON", ErrCorruptKeyring)
	}
	if f.Version != KeyringVersion {
		return nil, fmt.Errorf("%w: version %d is not supported (want %d)", ErrCorruptKeyring, f.Version, KeyringVersion)
	}
	if len(f.Keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrCorruptKeyring)
	}
	k := &Keyring{active: f.ActiveKID, keys: make(map[uint32]keyEntry, len(f.Keys))}
	for i, e := range f.Keys {
		if e.KID == 0 || e.KID > maxKeyringID {
			return nil, fmt.Errorf("%w: key %d has kid %d, want 1..%d", ErrCorruptKeyring, i, e.KID, maxKeyringID)
		}
		if _, dup := k.keys[e.KID]; dup {
			return nil, fmt.Errorf("%w: kid %d appears twice", ErrCorruptKeyring, e.KID)
		}
		raw, err := base64.StdEncoding.DecodeString(e.KeyB64)
		if err != nil || len(raw) != keyLen {
			return nil, fmt.Errorf("%w: key of kid %d is not %d bytes of base64", ErrCorruptKeyring, e.KID, keyLen)
		}
		entry, err := newEntry([keyLen]byte(raw), e.CreatedAt)
		if err != nil {
			return nil, err
		}
		k.keys[e.KID] = entry
	}
	if !k.Has(f.ActiveKID) {
		return nil, fmt.Errorf("%w: active_kid %d is not among the keys", ErrCorruptKeyring, f.ActiveKID)
	}
	return k, nil
}

// MarshalJSON writes the master.key format. The result is key material: treat it as a secret.
func (k *Keyring) MarshalJSON() ([]byte, error) {
	f := keyringFile{Version: KeyringVersion, ActiveKID: k.active}
	for _, kid := range k.KIDs() {
		e := k.keys[kid]
		f.Keys = append(f.Keys, keyFileEntry{KID: kid, KeyB64: base64.StdEncoding.EncodeToString(e.key[:]), CreatedAt: e.createdAt})
	}
	return json.MarshalIndent(f, "", "  ")
}

// String never prints key material (a keyring that ends up in a log line or %v stays safe).
func (k *Keyring) String() string {
	return fmt.Sprintf("Keyring{active_kid: %d, kids: %v}", k.active, k.KIDs())
}

// GoString is String, for %#v.
func (k *Keyring) GoString() string { return k.String() }

// AAD binds a ciphertext to the secret it belongs to, so that a row copied onto another
// secret's (node, kind, name) does not decrypt.
func aad(node, kind, name string) []byte { return []byte(node + ":" + kind + ":" + name) }

// unambiguous reports whether aad is one-to-one for node and kind: the AAD joins the three
// with ':', and names may hold one, so node and kind must not. Then no secret's ciphertext
// opens as another's.
func unambiguous(node, kind string) bool {
	return !strings.Contains(node, ":") && !strings.Contains(kind, ":")
}

// legacyAAD is what secrets written before node scoping were bound to.
func legacyAAD(kind, name string) []byte { return []byte(kind + ":" + name) }

// Sealed is an encrypted payload and the key id it needs.
type Sealed struct {
	KID        uint32
	Nonce      []byte // 24 bytes
	Ciphertext []byte // payload + 16-byte tag
}

// Seal encrypts plaintext for the secret (node, kind, name) under the active key with a random
// 24-byte nonce.
func (k *Keyring) Seal(node, kind, name string, plaintext []byte) (Sealed, error) {
	if !unambiguous(node, kind) {
		return Sealed{}, fmt.Errorf("encrypt secret %s/%s: node id and kind must not contain ':'", kind, name)
	}
	e := k.keys[k.active]
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fmt.Errorf("encrypt secret %s/%s: read nonce: %w", kind, name, err)
	}
	return Sealed{KID: k.active, Nonce: nonce, Ciphertext: e.aead.Seal(nil, nonce, plaintext, aad(node, kind, name))}, nil
}

// ErrUndecryptable marks a stored secret that cannot be decrypted: tampered or truncated
// ciphertext, a key id missing from master.key, or a master.key that is not the one the secret
// was written with.
var ErrUndecryptable = errors.New("secret cannot be decrypted")

// DecryptError says which secret failed to decrypt, and why; it never carries key or payload
// bytes.
type DecryptError struct {
	Node, Kind, Name string
	KID              uint32
	Reason           string
}

func (e *DecryptError) Error() string {
	return fmt.Sprintf("decrypt secret %s/%s (node %s, key id %d): %s", e.Kind, e.Name, e.Node, e.KID, e.Reason)
}

func (e *DecryptError) Is(target error) bool { return target == ErrUndecryptable }

// Open decrypts a secret sealed for (node, kind, name), also accepting the legacy binding
// (kind, name) of secrets written by older Hubs. Every failure is a *DecryptError.
func (k *Keyring) Open(node, kind, name string, s Sealed) ([]byte, error) {
	fail := func(reason string) error {
		return &DecryptError{Node: node, Kind: kind, Name: name, KID: s.KID, Reason: reason}
	}
	if !unambiguous(node, kind) {
		return nil, fail("node id and kind must not contain ':'")
	}
	e, ok := k.keys[s.KID]
	if !ok {
		return nil, fail("master.key has no key with this id (was master.key replaced or not restored?)")
	}
	// AEAD.Open panics on a nonce of the wrong size: check before, a corrupt row must not crash
	// the Hub.
	if len(s.Nonce) != chacha20poly1305.NonceSizeX {
		return nil, fail(fmt.Sprintf("stored nonce is %d bytes, want %d", len(s.Nonce), chacha20poly1305.NonceSizeX))
	}
	if len(s.Ciphertext) < chacha20poly1305.Overhead {
		return nil, fail("stored ciphertext is truncated")
	}
	if pt, err := e.aead.Open(nil, s.Nonce, s.Ciphertext, aad(node, kind, name)); err == nil {
		return pt, nil
	}
	if pt, err := e.aead.Open(nil, s.Nonce, s.Ciphertext, legacyAAD(kind, name)); err == nil {
		return pt, nil
	}
	return nil, fail("authentication failed: the stored ciphertext was altered or truncated, or master.key is not the key it was written with")
}

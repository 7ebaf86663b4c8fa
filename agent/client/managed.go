package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/secrets"
)

// Managed is the configuration the Hub pushes to the agent: its jobs (config snapshot) and its
// credentials (secrets snapshot: WebDAV credentials, and the age identities the Hub copied to
// this agent for a restore of an encrypted snapshot), kept in memory for the running agent and on
// disk, encrypted, for the next start. Files are <data>/agent/managed/{config,secrets}.json, 0600, written
// atomically; the payloads are sealed with XChaCha20-Poly1305 under a key from <data>/master.key
// (AAD "<node_id>:<kind>:<name>"), so a copy of the files alone reveals nothing.
type Managed struct {
	dir  string
	keys *secrets.Keyring
	now  func() time.Time

	mu     sync.RWMutex
	node   string
	config *protocol.ConfigSnapshot
	creds  map[credKey]protocol.NodeSecret // by kind and name
	ages   map[string]protocol.AgeIdentity
}

type credKey struct{ kind, name string }

type sealedDoc struct {
	KID           uint32 `json:"kid"`
	NonceB64      string `json:"nonce_b64"`
	CiphertextB64 string `json:"ciphertext_b64"`
}

type configFile struct {
	V          int       `json:"v"`
	NodeID     string    `json:"node_id"`
	SnapshotID string    `json:"snapshot_id"`
	IssuedAt   int64     `json:"issued_at"`
	SavedAt    int64     `json:"saved_at"`
	Encrypted  sealedDoc `json:"encrypted"`
}

type secretsFile struct {
	V        int    `json:"v"`
	NodeID   string `json:"node_id"`
	IssuedAt int64  `json:"issued_at"`
	SavedAt  int64  `json:"saved_at"`
	// WebDAV is what agents before the generic credential list wrote, sealed with AAD
	// "<node_id>:webdav:<name>"; it is still read, never written.
	WebDAV map[string]sealedDoc `json:"webdav,omitempty"`
	// Secrets holds every credential by kind and name, sealed with AAD "<node_id>:<kind>:<name>".
	Secrets map[string]map[string]sealedDoc `json:"secrets,omitempty"`
	// Ages holds the backup_age_identity secrets, sealed with AAD
	// "<node_id>:backup_age_identity:<name>".
	Ages map[string]sealedDoc `json:"backup_age_identities,omitempty"`
}

// OpenManaged opens (creating master.key if needed) the managed configuration kept in dataDir.
// The agent loads what was saved once it knows its id.
func OpenManaged(dataDir string, now func() time.Time) (*Managed, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create agent data directory: %w", err)
	}
	keyPath := filepath.Join(dataDir, secrets.MasterKeyFile)
	keys, err := secrets.ReadKeyringFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		if keys, err = secrets.NewKeyring(now()); err == nil {
			err = secrets.WriteKeyringFile(keyPath, keys)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("agent master key: %w", err)
	}
	return &Managed{dir: filepath.Join(dataDir, "agent", "managed"), keys: keys, now: now, creds: map[credKey]protocol.NodeSecret{}, ages: map[string]protocol.AgeIdentity{}}, nil
}

// bind sets the agent's id and loads what was saved for it.
func (m *Managed) bind(node string) error {
	m.mu.Lock()
	m.node = node
	m.mu.Unlock()
	return m.load()
}

func (m *Managed) seal(kind, name string, v any) (sealedDoc, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return sealedDoc{}, err
	}
	s, err := m.keys.Seal(m.node, kind, name, b)
	if err != nil {
		return sealedDoc{}, err
	}
	return sealedDoc{KID: s.KID, NonceB64: base64.StdEncoding.EncodeToString(s.Nonce), CiphertextB64: base64.StdEncoding.EncodeToString(s.Ciphertext)}, nil
}

func (m *Managed) open(kind, name string, d sealedDoc, v any) error {
	nonce, err1 := base64.StdEncoding.DecodeString(d.NonceB64)
	ct, err2 := base64.StdEncoding.DecodeString(d.CiphertextB64)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("decode %s %s: %w", kind, name, err)
	}
	b, err := m.keys.Open(m.node, kind, name, secrets.Sealed{KID: d.KID, Nonce: nonce, Ciphertext: ct})
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (m *Managed) load() error {
	var cf configFile
	if ok, err := readJSON(filepath.Join(m.dir, "config.json"), &cf); err != nil {
		return err
	} else if ok && cf.NodeID == m.node {
		var snap protocol.ConfigSnapshot
		if err := m.open("config", "snapshot", cf.Encrypted, &snap); err != nil {
			return fmt.Errorf("saved config snapshot: %w", err)
		}
		m.config = &snap
	}
	var sf secretsFile
	if ok, err := readJSON(filepath.Join(m.dir, "secrets.json"), &sf); err != nil {
		return err
	} else if ok && sf.NodeID == m.node {
		var legacy protocol.SecretsSnapshot
		for name, d := range sf.WebDAV {
			var w protocol.WebDAVSecret
			if err := m.open(secrets.KindWebDAV, name, d, &w); err != nil {
				return fmt.Errorf("saved secrets snapshot: %w", err)
			}
			legacy.WebDAV = append(legacy.WebDAV, w)
		}
		for _, c := range legacy.Credentials() {
			m.creds[credKey{c.Kind, c.Name}] = c
		}
		for kind, byName := range sf.Secrets {
			for name, d := range byName {
				var c protocol.NodeSecret
				if err := m.open(kind, name, d, &c); err != nil {
					return fmt.Errorf("saved secrets snapshot: %w", err)
				}
				m.creds[credKey{kind, name}] = c
			}
		}
		for name, d := range sf.Ages {
			var id protocol.AgeIdentity
			if err := m.open(secrets.KindBackupAgeIdentity, name, d, &id); err != nil {
				return fmt.Errorf("saved secrets snapshot: %w", err)
			}
			m.ages[name] = id
		}
	}
	return nil
}

func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s is not valid JSON: %w", path, err)
	}
	return true, nil
}

// SaveConfig stores a config snapshot; only once it is on disk may the agent acknowledge it.
func (m *Managed) SaveConfig(s *protocol.ConfigSnapshot) error {
	enc, err := m.seal("config", "snapshot", s)
	if err != nil {
		return fmt.Errorf("encrypt config snapshot: %w", err)
	}
	b, _ := json.Marshal(configFile{V: 1, NodeID: s.NodeID, SnapshotID: s.SnapshotID, IssuedAt: s.IssuedAt, SavedAt: m.now().Unix(), Encrypted: enc})
	if err := writeFileAtomic(filepath.Join(m.dir, "config.json"), b); err != nil {
		return err
	}
	m.mu.Lock()
	m.config = s
	m.mu.Unlock()
	return nil
}

// SaveSecrets replaces the stored credentials wholesale.
func (m *Managed) SaveSecrets(s *protocol.SecretsSnapshot) error {
	f := secretsFile{V: 1, NodeID: s.NodeID, IssuedAt: s.IssuedAt, SavedAt: m.now().Unix(),
		Secrets: map[string]map[string]sealedDoc{}, Ages: map[string]sealedDoc{}}
	next := map[credKey]protocol.NodeSecret{}
	for _, c := range s.Credentials() {
		if c.Kind == "" || c.Kind == secrets.KindBackupAgeIdentity {
			continue
		}
		enc, err := m.seal(c.Kind, c.Name, c)
		if err != nil {
			return fmt.Errorf("encrypt secret %s/%s: %w", c.Kind, c.Name, err)
		}
		if f.Secrets[c.Kind] == nil {
			f.Secrets[c.Kind] = map[string]sealedDoc{}
		}
		f.Secrets[c.Kind][c.Name] = enc
		next[credKey{c.Kind, c.Name}] = c
	}
	ages := map[string]protocol.AgeIdentity{}
	for _, id := range s.BackupAgeIdentities {
		enc, err := m.seal(secrets.KindBackupAgeIdentity, id.Name, id)
		if err != nil {
			return fmt.Errorf("encrypt age identity %s: %w", id.Name, err)
		}
		f.Ages[id.Name] = enc
		ages[id.Name] = id
	}
	b, _ := json.Marshal(f)
	if err := writeFileAtomic(filepath.Join(m.dir, "secrets.json"), b); err != nil {
		return err
	}
	m.mu.Lock()
	m.creds, m.ages = next, ages
	m.mu.Unlock()
	return nil
}

// Identity gives the age identity the Hub copied to this agent under keyName
// (engine/restore.IdentityProvider). The error never quotes the identity.
func (m *Managed) Identity(_ context.Context, keyName string) (age.Identity, error) {
	m.mu.RLock()
	id, ok := m.ages[keyName]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("age key %q is not on this agent (the Hub sends it with a restore of a snapshot encrypted with it): %w", keyName, secrets.ErrNotFound)
	}
	x, err := age.ParseX25519Identity(strings.TrimSpace(id.Identity))
	if err != nil {
		return nil, fmt.Errorf("age key %q: the identity the Hub sent is not an age X25519 secret key", keyName)
	}
	return x, nil
}

// Config is the last config snapshot saved, or nil.
func (m *Managed) Config() *protocol.ConfigSnapshot {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.config
}

// AllowedOrigins gives the origins the Hub bound a credential to
// (engine/targets/opener.Secrets); secrets.ErrOriginsUntracked when the Hub sent none.
func (m *Managed) AllowedOrigins(_ context.Context, _, kind, name string) ([]string, error) {
	m.mu.RLock()
	c, ok := m.creds[credKey{kind, name}]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("secret %s/%s: %w", kind, name, secrets.ErrNotFound)
	}
	if !c.OriginsBound {
		return nil, secrets.ErrOriginsUntracked
	}
	return c.AllowedOrigins, nil
}

// Get serves credentials to the backup pipeline (engine/targets/opener.Secrets).
func (m *Managed) Get(_ context.Context, _, kind, name string) ([]byte, error) {
	m.mu.RLock()
	c, ok := m.creds[credKey{kind, name}]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%s secret %q is not on this agent (missing_%s_secret): %w", kind, name, kind, secrets.ErrNotFound)
	}
	return append([]byte(nil), c.Payload...), nil
}

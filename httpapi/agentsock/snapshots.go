package agentsock

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"filippo.io/age"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"github.com/bastion-backup/bastion/storage"
)

// SecretReader is what snapshots need from the secrets store (engine/secrets.Store).
type SecretReader interface {
	List(ctx context.Context, node, kind string) ([]secrets.Meta, error)
	Get(ctx context.Context, node, kind, name string) ([]byte, error)
	AllowedOrigins(ctx context.Context, node, kind, name string) ([]string, error)
}

// Recipients gives the age public key of a key name, creating the key on first use
// (engine/agekeys.Keys). Agents keep no key store: an encrypted job's task and config carry the
// public key.
type Recipients interface {
	Recipient(ctx context.Context, keyName string) (age.Recipient, error)
}

// recipientOf returns the public key of an encrypted spec's key, or nil for an unencrypted one.
func recipientOf(ctx context.Context, keys Recipients, spec *jobspec.Spec) (*string, error) {
	if keys == nil || spec == nil || spec.Pipeline.Encryption.Type != jobspec.EncryptionAgeX25519 {
		return nil, nil
	}
	r, err := keys.Recipient(ctx, spec.Pipeline.Encryption.KeyName)
	if err != nil {
		return nil, err
	}
	str, ok := r.(fmt.Stringer)
	if !ok {
		return nil, fmt.Errorf("age key %q: its recipient has no text form", spec.Pipeline.Encryption.KeyName)
	}
	v := str.String()
	return &v, nil
}

// StoreSnapshots builds config and secrets snapshots from the database and the secrets store.
// Job specs go out as stored (secret names, no credentials); an agent's WebDAV credentials, and
// the age identities copied to it for restores, travel in its secrets snapshot, which the agent
// keeps encrypted at rest.
type StoreSnapshots struct {
	DB    *storage.DB
	Store SecretReader // nil: empty secrets snapshots
	// Keys gives encrypted jobs their public key (nil: none, and such jobs fail on the agent).
	Keys  Recipients
	Clock clock.Clock
}

// Config is the agent's jobs, sorted by id, with a snapshot id that depends only on them.
func (s StoreSnapshots) Config(ctx context.Context, agentID string) (*protocol.ConfigSnapshot, error) {
	jobs, err := s.DB.Reader().ListAgentJobs(ctx, agentID)
	if err != nil {
		return nil, err
	}
	out := make([]protocol.ConfigJob, 0, len(jobs))
	for _, j := range jobs {
		tz := j.ScheduleTimezone
		cj := protocol.ConfigJob{JobID: j.ID, Name: j.Name, Schedule: j.Schedule, ScheduleTimezone: &tz,
			OverlapPolicy: j.OverlapPolicy, UpdatedAt: j.UpdatedAt, Spec: json.RawMessage(j.SpecJSON)}
		if spec, err := jobspec.ParseAndValidate([]byte(j.SpecJSON)); err == nil {
			if cj.AgeRecipient, err = recipientOf(ctx, s.Keys, spec); err != nil {
				return nil, fmt.Errorf("age key of job %s: %w", j.ID, err)
			}
		}
		out = append(out, cj)
	}
	id, err := SnapshotID(out)
	if err != nil {
		return nil, err
	}
	return &protocol.ConfigSnapshot{NodeID: agentID, SnapshotID: id, IssuedAt: s.now(), Jobs: out}, nil
}

// SnapshotID is base64url(SHA-256(JSON(jobs))) of jobs sorted by id.
func SnapshotID(jobs []protocol.ConfigJob) (string, error) {
	b, err := json.Marshal(jobs)
	if err != nil {
		return "", fmt.Errorf("encode config snapshot: %w", err)
	}
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// Secrets is the agent-scoped credentials of every secret kind a target driver reads, in the
// generic list and, for webdav, in the original's list too (agents that know no other field).
func (s StoreSnapshots) Secrets(ctx context.Context, agentID string) (*protocol.SecretsSnapshot, error) {
	snap := &protocol.SecretsSnapshot{NodeID: agentID, IssuedAt: s.now(), WebDAV: []protocol.WebDAVSecret{},
		Secrets: []protocol.NodeSecret{}, BackupAgeIdentities: []protocol.AgeIdentity{}}
	if s.Store == nil {
		return snap, nil
	}
	for _, kind := range all.Registry.SecretKinds() {
		metas, err := s.Store.List(ctx, agentID, kind)
		if err != nil {
			return nil, fmt.Errorf("list %s secrets of agent %s: %w", kind, agentID, err)
		}
		for _, m := range metas {
			raw, err := s.Store.Get(ctx, agentID, kind, m.Name)
			if err != nil {
				return nil, fmt.Errorf("read %s secret %s of agent %s: %w", kind, m.Name, agentID, err)
			}
			origins, err := s.Store.AllowedOrigins(ctx, agentID, kind, m.Name)
			if err != nil {
				return nil, fmt.Errorf("read origins of %s secret %s of agent %s: %w", kind, m.Name, agentID, err)
			}
			snap.Secrets = append(snap.Secrets, protocol.NodeSecret{Kind: kind, Name: m.Name, Payload: raw,
				UpdatedAt: m.UpdatedAt, OriginsBound: true, AllowedOrigins: origins})
			if kind == secrets.KindWebDAV {
				var w secrets.WebDAV
				if err := json.Unmarshal(raw, &w); err != nil {
					return nil, fmt.Errorf("read webdav secret %s of agent %s: the payload is not a WebDAV credential", m.Name, agentID)
				}
				snap.WebDAV = append(snap.WebDAV, protocol.WebDAVSecret{Name: m.Name, Username: w.Username, Password: w.Password,
					UpdatedAt: m.UpdatedAt, OriginsBound: true, AllowedOrigins: origins})
			}
		}
	}
	ages, err := s.Store.List(ctx, agentID, secrets.KindBackupAgeIdentity)
	if err != nil {
		return nil, fmt.Errorf("list age keys of agent %s: %w", agentID, err)
	}
	for _, m := range ages {
		raw, err := s.Store.Get(ctx, agentID, secrets.KindBackupAgeIdentity, m.Name)
		if err != nil {
			return nil, fmt.Errorf("read age key %s of agent %s: %w", m.Name, agentID, err)
		}
		snap.BackupAgeIdentities = append(snap.BackupAgeIdentities, protocol.AgeIdentity{Name: m.Name, Identity: string(raw), UpdatedAt: m.UpdatedAt})
	}
	return snap, nil
}

func (s StoreSnapshots) now() int64 {
	if s.Clock == nil {
		return clock.Real{}.Now().Unix()
	}
	return s.Clock.Now().Unix()
}

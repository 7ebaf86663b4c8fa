// Package opener turns the redacted description of a target stored with a run
// (targets.RunTarget: node and the driver's target object) back into a working targets.Target
// with the target's driver (engine/targets/all), reading the credential the driver needs from
// the encrypted secrets store at that moment. The stored
// description never holds a credential, so a rotated WebDAV password applies to old snapshots too.
//
// Targets on the Hub are opened here; targets that belong to an agent (its local directories, its
// WebDAV secrets) are only reachable through that agent, via a RemoteOpener.
package opener

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/all"
)

// HubNode is the node id of the Hub itself.
const HubNode = secrets.HubNode

// Secrets reads decrypted secret payloads and the origins each may be sent to
// (engine/secrets.Store).
type Secrets interface {
	Get(ctx context.Context, node, kind, name string) ([]byte, error)
	// AllowedOrigins returns the origins (scheme://host:port) the secret is bound to; none means
	// unbound. secrets.ErrOriginsUntracked means the store cannot tell (the Hub checked).
	AllowedOrigins(ctx context.Context, node, kind, name string) ([]string, error)
}

// RemoteOpener opens targets that live on an agent (its local directories, or WebDAV with the
// agent's own secrets). The agents package implements it; it returns an error of kind
// targets.KindNetwork while the agent is not connected.
type RemoteOpener interface {
	Open(ctx context.Context, rt targets.RunTarget) (targets.Target, error)
}

// Config configures New.
type Config struct {
	Secrets Secrets
	// Remote opens agent targets; nil makes every agent target unreachable (KindNetwork).
	Remote RemoteOpener
	Logger zerolog.Logger
}

// Opener opens stored run targets. Safe for concurrent use.
type Opener struct {
	secrets Secrets
	remote  RemoteOpener
	log     zerolog.Logger
}

// New returns an Opener.
func New(c Config) *Opener {
	return &Opener{secrets: c.Secrets, remote: c.Remote, log: c.Logger.With().Str("component", "target-opener").Logger()}
}

// FromSpec is the stored description of a job's target when it runs on node.
func FromSpec(node string, t jobspec.Target) targets.RunTarget {
	return targets.RunTarget{NodeID: node, Target: t.Redacted()}
}

// Parse decodes a stored target snapshot (runs.target_snapshot_json,
// run_artifacts.target_snapshot_json); a missing node_id means the Hub.
func Parse(raw string) (targets.RunTarget, error) {
	var rt targets.RunTarget
	if err := json.Unmarshal([]byte(raw), &rt); err != nil {
		return rt, &targets.Error{Kind: targets.KindConfig, Code: "invalid_target_snapshot",
			Op: "read stored target", Err: fmt.Errorf("decode target snapshot: %w", err)}
	}
	if rt.NodeID == "" {
		rt.NodeID = HubNode
	}
	return rt, nil
}

// Open returns the target rt describes. Errors are *targets.Error: KindNetwork for an agent that
// cannot be reached, KindConfig for a missing secret or a description that cannot be used.
func (o *Opener) Open(ctx context.Context, rt targets.RunTarget) (targets.Target, error) {
	if rt.NodeID == "" {
		rt.NodeID = HubNode
	}
	if rt.NodeID != HubNode {
		if o.remote == nil {
			return nil, &targets.Error{Kind: targets.KindNetwork, Code: "agent_unreachable",
				Hint: "the target belongs to an agent, and this Hub cannot reach agents",
				Op:   "open target on node " + rt.NodeID, Err: errors.New("agent targets are not available")}
		}
		return o.remote.Open(ctx, rt)
	}
	cfg, err := all.Registry.ParseRedacted(rt.Target)
	if err != nil {
		return nil, err
	}
	d, _ := all.Registry.Lookup(cfg.Type())
	var creds []byte
	if kind := d.SecretKind(); kind != "" {
		if creds, err = o.credentials(ctx, rt.NodeID, kind, cfg); err != nil {
			return nil, err
		}
	}
	return cfg.Open(ctx, creds, targets.Deps{Logger: o.log})
}

// credentials reads the node's secret of kind the target names, read on every open so that a
// rotated password applies at once, old snapshots too. Neither the payload nor anything derived
// from it ever goes into an error or a log line.
func (o *Opener) credentials(ctx context.Context, node, kind string, cfg targets.Config) ([]byte, error) {
	name := cfg.SecretName()
	op := "open " + cfg.Type() + " target"
	missing := kind + "_secret_missing"
	if name == "" {
		return nil, &targets.Error{Kind: targets.KindConfig, Code: missing,
			Hint: "the " + cfg.Type() + " target names no credential", Op: op, Err: errors.New("secret_name is empty")}
	}
	if o.secrets == nil {
		return nil, &targets.Error{Kind: targets.KindConfig, Code: missing,
			Op: op, Err: errors.New("no secrets store configured")}
	}
	raw, err := o.secrets.Get(ctx, node, kind, name)
	if err != nil {
		return nil, &targets.Error{Kind: targets.KindConfig, Code: missing,
			Hint: fmt.Sprintf("create the %s credential %q (Settings → Secrets) or fix the job's secret_name", kind, name),
			Op:   "read " + kind + " credential " + name, Err: err}
	}
	// A job or snapshot row edited to point at another server must not get the credential sent
	// there: the target's origin must be one the credential is bound to.
	allowed, err := o.secrets.AllowedOrigins(ctx, node, kind, name)
	if err != nil && !errors.Is(err, secrets.ErrOriginsUntracked) {
		return nil, &targets.Error{Kind: targets.KindConfig, Code: missing,
			Op: "read origins of " + kind + " credential " + name, Err: err}
	}
	if err == nil {
		if err := secrets.CheckOrigin(kind, name, cfg.Endpoint(), allowed); err != nil {
			var oe *secrets.OriginError
			errors.As(err, &oe)
			return nil, &targets.Error{Kind: targets.KindConfig, Code: oe.Code, Hint: oe.Error(), Op: op, Err: err}
		}
	}
	return raw, nil
}

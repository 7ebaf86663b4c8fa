package agentsock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"github.com/bastion-backup/bastion/engine/targets/opener"
)

// SnapshotTaskTimeout bounds how long the Hub waits for an agent to delete or clean up one run
// directory; a timeout is retried by the snapshot queues like a network failure.
const SnapshotTaskTimeout = 5 * time.Minute

// NodeSecrets reads node-scoped credentials (engine/secrets.Store).
type NodeSecrets interface {
	// For refuses with *secrets.OriginError a credential not bound to rawURL's origin.
	For(ctx context.Context, node, kind, name, rawURL string) ([]byte, error)
}

// Targets opens the targets of runs made on agents (opener.RemoteOpener), for the snapshot
// queues (delete, incomplete-run cleanup):
//
//   - a remote target (WebDAV, any driver whose Config is not a targets.LocalPath) is opened on
//     the Hub itself with the agent's credential of that name (the Hub keeps the agent-scoped
//     secrets it pushes), so it works whether the agent is online or not;
//   - a local_dir target (targets.LocalPath) is a directory on the agent's machine: deletes and cleanups go to the
//     agent over its socket (snapshot_delete_task, snapshot_cleanup_task). While the agent is not
//     connected, Open fails with kind network, and the queues retry with backoff.
//
// The Hub never reads an agent's local directory itself: browsing and verifying such a snapshot
// go to its agent (RestoreBridge.Entries, StartVerify), and restores run on it.
type Targets struct {
	Hub     *Hub
	Secrets NodeSecrets
	Logger  zerolog.Logger
}

var _ opener.RemoteOpener = Targets{}

// Open returns the target rt describes on agent rt.NodeID.
func (o Targets) Open(ctx context.Context, rt targets.RunTarget) (targets.Target, error) {
	node := rt.NodeID
	cfg, err := all.Registry.ParseRedacted(rt.Target)
	if err != nil {
		return nil, err
	}
	if lp, ok := cfg.(targets.LocalPath); ok {
		base := lp.LocalPath()
		op := "open " + cfg.Type() + " target on agent " + node
		if base == "" || !filepath.IsAbs(base) {
			return nil, &targets.Error{Kind: targets.KindConfig, Code: cfg.Type() + "_config", Op: op,
				Hint: "the target's base_dir must be an absolute path", Err: fmt.Errorf("base_dir %q is not absolute", base)}
		}
		if o.Hub == nil || !o.Hub.Connected(node) {
			return nil, &targets.Error{Kind: targets.KindNetwork, Code: "agent_offline", Op: op,
				Hint: "the snapshot is in a directory on an agent that is not connected; this is retried when it is",
				Err:  ErrAgentOffline}
		}
		return &agentDir{h: o.Hub, agentID: node, base: filepath.Clean(base), red: rt.Target}, nil
	}
	d, _ := all.Registry.Lookup(cfg.Type())
	var creds []byte
	if kind := d.SecretKind(); kind != "" {
		name := cfg.SecretName()
		op := "open " + cfg.Type() + " target of agent " + node
		missing := kind + "_secret_missing"
		if o.Secrets == nil || name == "" {
			return nil, &targets.Error{Kind: targets.KindConfig, Code: missing, Op: op,
				Err: fmt.Errorf("no %s credential to use", kind)}
		}
		creds, err = o.Secrets.For(ctx, node, kind, name, cfg.Endpoint())
		var oe *secrets.OriginError
		if errors.As(err, &oe) {
			return nil, &targets.Error{Kind: targets.KindConfig, Code: oe.Code, Op: op, Hint: oe.Error(), Err: err}
		}
		if err != nil {
			return nil, &targets.Error{Kind: targets.KindConfig, Code: missing, Op: op,
				Hint: fmt.Sprintf("the agent's %s credential %q is gone; create it again for that agent", kind, name), Err: err}
		}
	}
	return cfg.Open(ctx, creds, targets.Deps{Logger: o.Logger})
}

// agentDir is a local_dir target on an agent's machine. Only whole-run operations go through
// it: deleting a run and cleaning up an incomplete one.
type agentDir struct {
	h       *Hub
	agentID string
	base    string
	red     targets.Redacted
}

func (d *agentDir) Type() string { return d.red.Type }

func (d *agentDir) Redacted() targets.Redacted { return d.red }

// Location names the run directory on the agent.
func (d *agentDir) Location(run targets.RunRef) string {
	return "agent " + d.agentID + ":" + filepath.Join(d.base, run.JobID, run.RunID)
}

func (d *agentDir) unsupported(op string) error {
	return &targets.Error{Kind: targets.KindConfig, Code: "agent_local_snapshot", Op: op,
		Hint: "this snapshot is in a directory on agent " + d.agentID + ": restore it on that agent",
		Err:  errors.New("the Hub cannot read or write an agent's directories")}
}

func (d *agentDir) Put(context.Context, targets.RunRef, string, io.ReadSeeker, int64) (bool, error) {
	return false, d.unsupported("put")
}

func (d *agentDir) Size(_ context.Context, _ targets.RunRef, name string) (int64, error) {
	return 0, d.unsupported("size " + name)
}

func (d *agentDir) Open(_ context.Context, _ targets.RunRef, name string) (io.ReadCloser, error) {
	return nil, d.unsupported("open " + name)
}

func deleteKey(runID string) string  { return "snapshot_delete:" + runID }
func cleanupKey(runID string) string { return "snapshot_cleanup:" + runID }

// DeleteRun asks the agent to delete the run directory and waits for its answer.
func (d *agentDir) DeleteRun(ctx context.Context, run targets.RunRef) (targets.DeleteResult, error) {
	op := "delete run " + run.RunID + " on agent " + d.agentID
	res, err := askAgentDir[*protocol.SnapshotDeleteResult](ctx, d, op, run, deleteKey(run.RunID),
		&protocol.SnapshotDeleteTask{Task: protocol.SnapshotDelete{RunID: run.RunID, JobID: run.JobID, BaseDir: d.base}})
	if err != nil {
		return "", err
	}
	switch res.Status {
	case protocol.DeleteSuccess:
		return targets.DeleteDeleted, nil
	case protocol.DeleteNotFound:
		return targets.DeleteNotFound, nil
	}
	return "", agentError(op, "agent_delete_failed", res.ErrorKind, res.Error)
}

// CleanupRun asks the agent to remove what an incomplete run left; it never touches a complete
// run.
func (d *agentDir) CleanupRun(ctx context.Context, run targets.RunRef) (targets.CleanupResult, error) {
	op := "clean up run " + run.RunID + " on agent " + d.agentID
	res, err := askAgentDir[*protocol.SnapshotCleanupResult](ctx, d, op, run, cleanupKey(run.RunID),
		&protocol.SnapshotCleanupTask{Task: protocol.SnapshotDelete{RunID: run.RunID, JobID: run.JobID, BaseDir: d.base}})
	if err != nil {
		return "", err
	}
	switch res.Status {
	case protocol.CleanupDeleted:
		return targets.CleanupDeleted, nil
	case protocol.CleanupSkipComplete:
		return targets.CleanupSkipComplete, nil
	case protocol.CleanupSkipNotFound:
		return targets.CleanupSkipNotFound, nil
	}
	return "", agentError(op, "agent_cleanup_failed", res.ErrorKind, res.Error)
}

// askAgentDir sends a whole-run task about run to the agent and waits for its reply of type R.
func askAgentDir[R protocol.Message](ctx context.Context, d *agentDir, op string, run targets.RunRef, key string, task protocol.Message) (R, error) {
	var zero R
	if err := targets.ValidateRun(run); err != nil {
		return zero, &targets.Error{Kind: targets.KindConfig, Code: "local_dir_config", Op: op, Err: err}
	}
	res, err := callFor[R](ctx, d.h, d.agentID, key, SnapshotTaskTimeout, task)
	if err != nil {
		return zero, callError(op, err)
	}
	return res, nil
}

// callError classifies a request the agent did not answer: gone or silent is a network failure
// (retried), a reply of the wrong type a protocol failure, anything else unknown.
func callError(op string, err error) error {
	switch {
	case errors.Is(err, errWrongReply):
		return &targets.Error{Kind: targets.KindUnknown, Code: "agent_protocol", Op: op, Err: err}
	case errors.Is(err, ErrAgentOffline):
		return &targets.Error{Kind: targets.KindNetwork, Code: "agent_offline", Op: op,
			Hint: "the agent disconnected; this is retried when it is back", Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &targets.Error{Kind: targets.KindTimeout, Code: "agent_timeout", Op: op,
			Hint: "the agent did not answer in time; this is retried", Err: err}
	}
	return &targets.Error{Kind: targets.KindUnknown, Code: "agent_unavailable", Op: op, Err: err}
}

// agentError is the failure an agent reported, with the kind it classified it as.
func agentError(op, code string, kind, msg *string) error {
	k := targets.KindUnknown
	if kind != nil && *kind != "" {
		k = *kind
	}
	text := "the agent reported a failure"
	if msg != nil && *msg != "" {
		text = *msg
	}
	return &targets.Error{Kind: k, Code: code, Op: op, Err: errors.New(text)}
}

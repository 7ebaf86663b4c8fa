package agentsock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"path/filepath"
	"sync"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/storage"
)

// OperationService is what restores on agents need from the operations engine
// (engine/operations.Service).
type OperationService interface {
	RemoteEvent(ctx context.Context, opID, level, kind, message string, fields json.RawMessage) error
	RemoteProgress(ctx context.Context, opID string, progressJSON []byte) error
	FinishRemote(ctx context.Context, opID string, out operations.RemoteOutcome) (bool, error)
}

// SecretStore is what restores on agents need from the secrets store (engine/secrets.Store): the
// Hub's age identity of an encrypted snapshot, copied into the agent's scope, and the agent's
// WebDAV credential names.
type SecretStore interface {
	Get(ctx context.Context, node, kind, name string) ([]byte, error)
	Put(ctx context.Context, node, kind, name string, payload []byte) error
	List(ctx context.Context, node, kind string) ([]secrets.Meta, error)
	AllowedOrigins(ctx context.Context, node, kind, name string) ([]string, error)
}

// RestoreBridge runs restores on agents, and serves the snapshots only an agent can read (entries
// for the restore picker, verifies on the agent; see agentlocal.go): it is the operations
// service's Remote (with RemoteEntries and RemoteVerifier) and the Hub's OperationSink. Build it first, give it to agentsock.New (Operations) and to operations.New
// (Remote), then Attach both:
//
//	restores := agentsock.NewRestoreBridge(store)
//	hub := agentsock.New(agentsock.Config{..., Operations: restores})
//	ops := operations.New(operations.Config{..., Remote: restores})
//	restores.Attach(hub, ops)
//
// A restore on an agent is a task like a backup: stored before it is sent (agent_tasks, kind
// restore, id = operation id), re-sent on every connection until the agent's result has been
// applied, recorded on the agent's disk before it starts, its events numbered and its result kept
// until acknowledged, so it runs once and ends once.
type RestoreBridge struct {
	secrets SecretStore

	mu  sync.RWMutex
	hub *Hub
	ops OperationService
}

var (
	_ operations.Remote         = (*RestoreBridge)(nil)
	_ operations.RemoteEntries  = (*RestoreBridge)(nil)
	_ operations.RemoteVerifier = (*RestoreBridge)(nil)
	_ OperationSink             = (*RestoreBridge)(nil)
)

// NewRestoreBridge returns an unattached bridge. store may be nil (no encrypted snapshots, no
// WebDAV snapshots).
func NewRestoreBridge(store SecretStore) *RestoreBridge { return &RestoreBridge{secrets: store} }

// Attach completes the bridge.
func (b *RestoreBridge) Attach(h *Hub, ops OperationService) {
	b.mu.Lock()
	b.hub, b.ops = h, ops
	b.mu.Unlock()
}

func (b *RestoreBridge) get() (*Hub, OperationService) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.hub, b.ops
}

// Restore refusal codes (HTTP 400 through operations.InputError).
const (
	CodeAgentNotConnected   = "agent_not_connected"
	CodeSnapshotUnreachable = "snapshot_not_reachable"
	CodeMissingWebDAVSecret = "missing_webdav_secret"
)

// Check refuses a restore that the agent cannot run now: unknown or revoked agent, agent not
// connected, a relative directory, or a snapshot out of its reach. An agent reads the snapshot
// itself: from its own directories, or from WebDAV with its own credential of the same name. A
// snapshot in a directory of the Hub or of another agent is out of its reach (the Hub does not
// stream snapshots to agents).
func (b *RestoreBridge) Check(ctx context.Context, node string, task operations.RestoreTask) error {
	h, _ := b.get()
	if err := agentReady(ctx, h, node, "restores"); err != nil {
		return err
	}
	if d := task.Destination; d.Type == operations.DestinationWebDAV {
		if err := b.checkSecret(ctx, node, secrets.KindWebDAV, d.SecretName, d.PrefixURL, "destination.secret_name", "destination.base_url",
			"write the restore with"); err != nil {
			return err
		}
	} else if !filepath.IsAbs(d.Directory) {
		return &operations.InputError{Code: "invalid_destination", Field: "destination.directory", Reason: "not_absolute",
			Message: fmt.Sprintf("destination.directory must be an absolute path on the agent, got %q", d.Directory)}
	}
	rt := task.Target
	cfg, err := all.Registry.ParseRedacted(rt.Target)
	if err != nil {
		return &operations.InputError{Code: CodeSnapshotUnreachable, Field: "destination.node_id", Reason: "unsupported_target",
			Message: fmt.Sprintf("snapshots on %q targets cannot be restored on agents", rt.Target.Type)}
	}
	if _, local := cfg.(targets.LocalPath); local {
		if rt.NodeID != node {
			where := "the Hub"
			if rt.NodeID != "hub" {
				where = "agent " + rt.NodeID
			}
			return &operations.InputError{Code: CodeSnapshotUnreachable, Field: "destination.node_id", Reason: "other_node",
				Message: fmt.Sprintf("the snapshot is in a directory on %s, which agent %s cannot read; restore it on %s instead", where, node, where)}
		}
		return nil
	}
	d, _ := all.Registry.Lookup(cfg.Type())
	if kind := d.SecretKind(); kind != "" {
		return b.checkSecret(ctx, node, kind, cfg.SecretName(), cfg.Endpoint(), "destination.node_id", "destination.node_id",
			"read the snapshot with")
	}
	return nil
}

// checkSecret refuses, before a task is sent, an operation for which the agent lacks the
// credential (kind, name) or would send it to a server it is not bound to (url's origin).
func (b *RestoreBridge) checkSecret(ctx context.Context, node, kind, name, url, nameField, urlField, purpose string) error {
	if !b.hasSecret(ctx, node, kind, name) {
		return &operations.InputError{Code: "missing_" + kind + "_secret", Field: nameField, Reason: "missing_secret",
			Message: fmt.Sprintf("agent %s has no %s credential named %q to %s; create it for that agent", node, kind, name, purpose)}
	}
	allowed, err := b.secrets.AllowedOrigins(ctx, node, kind, name)
	if err != nil {
		return fmt.Errorf("read origins of %s secret %q of agent %s: %w", kind, name, node, err)
	}
	var oe *secrets.OriginError
	if errors.As(secrets.CheckOrigin(kind, name, url, allowed), &oe) {
		return &operations.InputError{Code: oe.Code, Field: urlField, Reason: "origin_not_allowed",
			Message: "agent " + node + ": " + oe.Error()}
	}
	return nil
}

// agentReady refuses an operation on node unless it is a known agent, not revoked, and
// connected (what says which operations, in messages).
func agentReady(ctx context.Context, h *Hub, node, what string) error {
	if h == nil {
		return &operations.InputError{Code: "invalid_destination", Field: "destination.node_id", Reason: "unsupported",
			Message: what + " on agents are not available on this Hub"}
	}
	a, err := h.db.Reader().GetAgent(ctx, node)
	if errors.Is(err, storage.ErrNotFound) {
		return &operations.InputError{Code: "invalid_destination", Field: "destination.node_id", Reason: "not_found",
			Message: fmt.Sprintf("no node %q: use \"hub\" or an agent id", node)}
	}
	if err != nil {
		return err
	}
	if a.RevokedAt != nil {
		return &operations.InputError{Code: "invalid_destination", Field: "destination.node_id", Reason: "revoked",
			Message: fmt.Sprintf("agent %s is revoked", node)}
	}
	if !h.Connected(node) {
		return &operations.InputError{Code: CodeAgentNotConnected, Field: "destination.node_id", Reason: "offline",
			Message: fmt.Sprintf("agent %s is not connected; %s on an agent need it online", node, what)}
	}
	return nil
}

func (b *RestoreBridge) hasSecret(ctx context.Context, node, kind, name string) bool {
	if b.secrets == nil || name == "" {
		return false
	}
	metas, err := b.secrets.List(ctx, node, kind)
	if err != nil {
		return false
	}
	for _, m := range metas {
		if m.Name == name {
			return true
		}
	}
	return false
}

// Start stores the restore as the agent's task and sends it. For an encrypted snapshot the Hub
// first copies its age identity (backup_age_identity/<key>) into the agent's scope; the secrets
// snapshot that carries it is sent right before the task, every time the task is sent.
func (b *RestoreBridge) Start(ctx context.Context, node string, task operations.RestoreTask) error {
	h, _ := b.get()
	if h == nil {
		return errors.New("restores on agents are not available on this Hub")
	}
	if err := b.shareKey(ctx, h, node, task.OperationID, task.RunID, task.JobID); err != nil {
		return err
	}
	req := protocol.RestoreRequest{
		OpID: task.OperationID, RunID: task.RunID, JobID: task.JobID, ConflictPolicy: task.Conflict,
		Snapshot: wireSnapshot(task.Target), KeepSpecialBits: task.KeepSpecialBits,
	}
	if d := task.Destination; d.Type == operations.DestinationWebDAV {
		// No destination_dir: an older agent that reads only that refuses the task instead of
		// restoring somewhere else.
		req.Destination = &protocol.RestoreDestination{Type: d.Type, BaseURL: d.BaseURL, SecretName: d.SecretName, Prefix: d.Prefix}
	} else {
		dir := filepath.Clean(d.Directory)
		req.Destination = &protocol.RestoreDestination{Type: operations.DestinationLocalFS, Directory: dir}
		req.DestinationDir = dir
	}
	if task.Selection != nil {
		req.Selection = &protocol.RestoreSelection{Files: task.Selection.Files, Dirs: task.Selection.Dirs}
	}
	payload, err := json.Marshal(&protocol.RestoreTask{TaskID: task.OperationID, Task: req})
	if err != nil {
		return fmt.Errorf("encode restore task %s: %w", task.OperationID, err)
	}
	_, err = h.Dispatch(ctx, storage.AgentTask{ID: task.OperationID, AgentID: node, RunID: task.RunID,
		Kind: storage.AgentTaskRestore, PayloadJSON: string(payload)}, nil)
	return err
}

// shareKey copies the age identity of an encrypted snapshot into the agent's scope. The key name
// comes from the spec the run was made with (an agent run's task keeps it), else from the job's
// current spec.
func (b *RestoreBridge) shareKey(ctx context.Context, h *Hub, node, opID, runID, jobID string) error {
	name := b.keyName(ctx, h, runID, jobID)
	if name == "" || b.secrets == nil {
		return nil
	}
	raw, err := b.secrets.Get(ctx, "hub", secrets.KindBackupAgeIdentity, name)
	if errors.Is(err, storage.ErrNotFound) {
		h.log.Warn().Str("operation_id", opID).Str("key_name", name).
			Msg("the snapshot's age key is not on the Hub; the agent will not be able to decrypt it")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read age key %q: %w", name, err)
	}
	if err := b.secrets.Put(ctx, node, secrets.KindBackupAgeIdentity, name, raw); err != nil {
		return fmt.Errorf("copy age key %q to agent %s: %w", name, node, err)
	}
	h.log.Info().Str("operation_id", opID).Str("agent_id", node).Str("key_name", name).
		Msg("age key copied to the agent for a restore or verify")
	return nil
}

func (b *RestoreBridge) keyName(ctx context.Context, h *Hub, runID, jobID string) string {
	var raw json.RawMessage
	if t, err := h.db.Reader().GetAgentTask(ctx, runID); err == nil && t.Kind == storage.AgentTaskBackup {
		var m protocol.Task
		if json.Unmarshal([]byte(t.PayloadJSON), &m) == nil {
			raw = m.Task.Spec
		}
	}
	if raw == nil {
		if j, err := h.db.Reader().GetJob(ctx, jobID); err == nil {
			raw = json.RawMessage(j.SpecJSON)
		}
	}
	spec, err := jobspec.Parse(raw)
	if err != nil || spec.Pipeline.Encryption.Type != jobspec.EncryptionAgeX25519 {
		return ""
	}
	return spec.Pipeline.Encryption.KeyName
}

// Cancel records the cancel on the restore's task and sends it if the agent is connected; it is
// replayed after every re-send.
func (b *RestoreBridge) Cancel(ctx context.Context, opID string) error {
	h, _ := b.get()
	if h == nil {
		return nil
	}
	return h.CancelTask(ctx, opID)
}

// OperationEvent records a restore's or verify's event, or its progress.
func (b *RestoreBridge) OperationEvent(ctx context.Context, t storage.AgentTask, ev *protocol.OperationEvent) error {
	_, ops := b.get()
	if ops == nil {
		return errors.New("operations not attached")
	}
	if ev.Kind == "progress_snapshot" {
		if len(ev.Fields) == 0 || string(ev.Fields) == "null" {
			return nil
		}
		return ops.RemoteProgress(ctx, t.ID, ev.Fields)
	}
	return ops.RemoteEvent(ctx, t.ID, ev.Level, ev.Kind, ev.Message, ev.Fields)
}

// OperationResult ends the restore or verify (first result wins, a requested cancel wins over a
// failure). A restore's summary names the agent as the destination's node.
func (b *RestoreBridge) OperationResult(ctx context.Context, t storage.AgentTask, res *protocol.OperationResult) error {
	_, ops := b.get()
	if ops == nil {
		return errors.New("operations not attached")
	}
	out := operations.RemoteOutcome{Summary: withNode(res.Summary, t.AgentID)}
	switch res.Status {
	case protocol.StatusSuccess:
		out.Status = storage.OperationSuccess
	case protocol.StatusCanceled:
		out.Status = storage.OperationCanceled
	default:
		out.Status = storage.OperationFailed
		out.Code, out.Message = agentFailure(res.Summary, res.Error, "the agent reported the "+t.Kind+" failed")
	}
	_, err := ops.FinishRemote(ctx, t.ID, out)
	return err
}

// withNode sets summary.destination.node_id, which the agent does not know as the Hub names it.
func withNode(summary json.RawMessage, node string) json.RawMessage {
	var doc map[string]json.RawMessage
	if json.Unmarshal(summary, &doc) != nil || doc == nil {
		return summary
	}
	var dest map[string]any
	if json.Unmarshal(doc["destination"], &dest) != nil || dest == nil {
		return summary
	}
	dest["node_id"] = node
	b, err := json.Marshal(dest)
	if err != nil {
		return summary
	}
	doc["destination"] = b
	out, err := json.Marshal(doc)
	if err != nil {
		return summary
	}
	return out
}

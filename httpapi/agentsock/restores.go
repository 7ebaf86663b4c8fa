package agentsock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/all"
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
	Delete(ctx context.Context, node, kind, name string) error
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
	// keyMu orders copying an age key to an agent (with storing the task that needs it) against
	// removing the copies no open task needs.
	keyMu sync.Mutex

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
	b.keyMu.Lock()
	defer b.keyMu.Unlock()
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

// shareKey copies the age identity of an encrypted snapshot into the agent's scope, for the
// duration of one operation: releaseKeys removes it when no open operation of the agent needs it.
// The key name comes from the run's own record (see keyName), never from the job's current spec
// when the run has one. Callers hold keyMu until the operation's task is stored.
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

// keyName is the age key a run's snapshot is encrypted for, from the run's own record: the spec
// the Hub sent with the run's task (agent runs), else the key its summary names (encryption_key,
// as in the manifest) when the Hub wrote that summary itself. An uploaded offline run's summary
// comes from an agent, which could name any key: it counts only when the job's spec names the same
// key. Runs recorded before summaries named their key fall back to the job's current spec.
func (b *RestoreBridge) keyName(ctx context.Context, h *Hub, runID, jobID string) string {
	specKey := func(raw json.RawMessage) string {
		spec, err := jobspec.Parse(raw)
		if err != nil || spec.Pipeline.Encryption.Type != jobspec.EncryptionAgeX25519 {
			return ""
		}
		return spec.Pipeline.Encryption.KeyName
	}
	if t, err := h.db.Reader().GetAgentTask(ctx, runID); err == nil && t.Kind == storage.AgentTaskBackup {
		var m protocol.Task
		if json.Unmarshal([]byte(t.PayloadJSON), &m) == nil && m.Task.Spec != nil {
			return specKey(m.Task.Spec)
		}
	}
	current := ""
	if j, err := h.db.Reader().GetJob(ctx, jobID); err == nil {
		current = specKey(json.RawMessage(j.SpecJSON))
	}
	run, err := h.db.Reader().GetRun(ctx, runID)
	if err != nil {
		return ""
	}
	var sum struct {
		EncryptionKey *string `json:"encryption_key"`
	}
	if run.SummaryJSON != nil && json.Unmarshal([]byte(*run.SummaryJSON), &sum) == nil && sum.EncryptionKey != nil {
		ingested, err := h.db.Reader().RunIngested(ctx, runID)
		if err != nil {
			return ""
		}
		if ingested && *sum.EncryptionKey != current {
			h.log.Warn().Str("run_id", runID).Msg("an uploaded run names another age key than its job; no key is shared")
			return ""
		}
		return *sum.EncryptionKey
	}
	return current
}

// releaseKeys removes from an agent's scope the age keys that no open restore or verify of that
// agent needs (ending is the operation being finished, whose task is still open), and sends the
// agent its secrets again so that it forgets them too. It runs when an operation ends and when the
// agent says hello (after a Hub restart, or for operations that ended while it was away).
func (b *RestoreBridge) releaseKeys(ctx context.Context, h *Hub, agentID, ending string) error {
	if b.secrets == nil {
		return nil
	}
	b.keyMu.Lock()
	defer b.keyMu.Unlock()
	held, err := b.secrets.List(ctx, agentID, secrets.KindBackupAgeIdentity)
	if err != nil || len(held) == 0 {
		return err
	}
	needed := map[string]bool{}
	var after int64
	afterID := ""
	for {
		open, err := h.db.Reader().ListOpenAgentTasks(ctx, agentID, after, afterID, resendPage)
		if err != nil {
			return err
		}
		for _, t := range open {
			if isOperation(t.Kind) && t.ID != ending {
				needed[b.keyName(ctx, h, t.RunID, jobOf(t))] = true
			}
		}
		if len(open) < resendPage {
			break
		}
		after, afterID = open[len(open)-1].CreatedAt, open[len(open)-1].ID
	}
	removed := 0
	for _, m := range held {
		if needed[m.Name] {
			continue
		}
		if err := b.secrets.Delete(ctx, agentID, secrets.KindBackupAgeIdentity, m.Name); err != nil && !errors.Is(err, secrets.ErrNotFound) {
			return fmt.Errorf("remove age key %q from agent %s: %w", m.Name, agentID, err)
		}
		removed++
		h.log.Info().Str("agent_id", agentID).Str("key_name", m.Name).Msg("age key removed from the agent: no open restore or verify needs it")
	}
	if removed == 0 || ending == "" {
		return nil // at hello, the secrets snapshot that follows carries the change
	}
	return h.PushSecrets(ctx, agentID)
}

// jobOf reads the job id a restore or verify task names.
func jobOf(t storage.AgentTask) string {
	var m struct {
		Task struct {
			JobID string `json:"job_id"`
		} `json:"task"`
	}
	_ = json.Unmarshal([]byte(t.PayloadJSON), &m)
	return m.Task.JobID
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
	if _, err := ops.FinishRemote(ctx, t.ID, out); err != nil {
		return err
	}
	// The operation is over: the age key copied for it leaves the agent. A failure here is logged
	// only; the next hello of the agent tries again.
	if h, _ := b.get(); h != nil {
		if err := b.releaseKeys(ctx, h, t.AgentID, t.ID); err != nil {
			h.log.Warn().Err(err).Str("operation_id", t.ID).Msg("remove age keys shared with the agent")
		}
	}
	return nil
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

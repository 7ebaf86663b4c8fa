package agentsock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/storage"
)

// Snapshots in an agent's own directories can be read by that agent only. The restore picker
// asks it for their entries (entries_list, an RPC like fs_list), and verifies run on it as
// operations (verify_task, exactly once like a restore).

// CodeAgentUnsupported refuses a verify on an agent too old to run one (400).
const CodeAgentUnsupported = operations.CodeAgentUnsupported

func wireSnapshot(rt targets.RunTarget) *protocol.SnapshotTarget {
	s := protocol.SnapshotTarget(rt.Target.JSON())
	return &s
}

// Entries asks agent node for one page of a snapshot's entries index. Errors: *operations.AgentError
// (not connected, disconnected before it answered, no answer within EntriesTimeout, an agent
// that does not serve entries_list), operations.ErrInvalidCursor, or *targets.Error for what
// the agent could not read.
func (b *RestoreBridge) Entries(ctx context.Context, node string, task operations.EntriesTask) (restore.Page, error) {
	h, _ := b.get()
	if h == nil || !h.Connected(node) {
		return restore.Page{}, &operations.AgentError{Code: operations.CodeAgentOffline, Reason: "not_connected",
			Message: fmt.Sprintf("the snapshot is in a directory on agent %s, which is not connected", node)}
	}
	ok, err := h.Supports(ctx, node, protocol.ControlEntriesList)
	if err != nil {
		return restore.Page{}, err
	}
	if !ok {
		return restore.Page{}, &operations.AgentError{Code: operations.CodeAgentUnsupported, Reason: "entries_list",
			Message: fmt.Sprintf("agent %s cannot list snapshot entries; upgrade it", node)}
	}
	o := task.Options
	res, err := h.EntriesList(ctx, node, protocol.EntriesList{RunID: task.RunID, JobID: task.JobID, Snapshot: wireSnapshot(task.Target),
		Prefix: o.Prefix, Cursor: o.Cursor, Limit: o.Limit, Q: o.Q, Kind: o.Kind, HideDotfiles: o.HideDotfiles,
		FilesFirst: o.FilesFirst, MinSize: o.MinSize, MaxSize: o.MaxSize})
	if err != nil {
		return restore.Page{}, entriesCallError(node, err)
	}
	if res.ErrorCode != nil {
		return restore.Page{}, entriesAnswerError(node, task.RunID, res)
	}
	page := restore.Page{Prefix: res.Prefix, Total: int(res.Total), Entries: make([]restore.Child, 0, len(res.Entries))}
	for _, c := range res.Entries {
		page.Entries = append(page.Entries, restore.Child{Name: c.Name, Path: c.Path, Kind: c.Kind, Size: c.Size})
	}
	if res.NextCursor != nil {
		page.NextCursor = *res.NextCursor
	}
	return page, nil
}

// entriesCallError says why the agent did not answer.
func entriesCallError(node string, err error) error {
	switch {
	case errors.Is(err, ErrAgentDisconnected):
		return &operations.AgentError{Code: operations.CodeAgentOffline, Reason: "disconnected",
			Message: fmt.Sprintf("agent %s disconnected before it answered; try again when it is back", node), Err: err}
	case errors.Is(err, ErrAgentOffline):
		return &operations.AgentError{Code: operations.CodeAgentOffline, Reason: "not_connected",
			Message: fmt.Sprintf("the snapshot is in a directory on agent %s, which is not connected", node), Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &operations.AgentError{Code: operations.CodeAgentTimeout, Reason: "no_answer",
			Message: fmt.Sprintf("agent %s did not answer within %s", node, EntriesTimeout), Err: err}
	}
	return err
}

// entriesAnswerError turns the agent's error answer into the error the Hub would have had
// reading the snapshot itself.
func entriesAnswerError(node, runID string, res *protocol.EntriesListResult) error {
	code, msg := *res.ErrorCode, "the agent could not list the snapshot"
	if res.Error != nil && *res.Error != "" {
		msg = *res.Error
	}
	switch {
	case code == protocol.EntriesInvalidCursor:
		return operations.ErrInvalidCursor
	case code == protocol.EntriesUnsupported:
		return &operations.AgentError{Code: operations.CodeAgentUnsupported, Reason: "entries_list", Message: msg}
	}
	kind := targets.KindUnknown
	if res.ErrorKind != nil && *res.ErrorKind != "" {
		kind = *res.ErrorKind
	}
	return &targets.Error{Kind: kind, Code: code, Op: "list entries of run " + runID + " on agent " + node, Err: errors.New(msg)}
}

// CheckVerify refuses a verify agent node cannot run now: unknown, revoked or not connected (400
// agent_not_connected, as for restores), or too old to know verify_task.
func (b *RestoreBridge) CheckVerify(ctx context.Context, node string, _ operations.VerifyTask) error {
	h, _ := b.get()
	if err := agentReady(ctx, h, node, "verifies"); err != nil {
		return err
	}
	ok, err := h.Supports(ctx, node, protocol.ControlVerify)
	if err != nil {
		return err
	}
	if !ok {
		return &operations.InputError{Code: CodeAgentUnsupported, Field: "node_id", Reason: "verify",
			Message: fmt.Sprintf("agent %s cannot verify snapshots; upgrade it", node)}
	}
	return nil
}

// StartVerify stores the verify as the agent's task (kind verify, id = operation id) and sends
// it; like a restore it is re-sent until its result is applied, and an encrypted snapshot's age
// identity is copied to the agent first.
func (b *RestoreBridge) StartVerify(ctx context.Context, node string, task operations.VerifyTask) error {
	h, _ := b.get()
	if h == nil {
		return errors.New("verifies on agents are not available on this Hub")
	}
	b.keyMu.Lock()
	defer b.keyMu.Unlock()
	if err := b.shareKey(ctx, h, node, task.OperationID, task.RunID, task.JobID); err != nil {
		return err
	}
	payload, err := json.Marshal(&protocol.VerifyTask{TaskID: task.OperationID, Task: protocol.VerifyRequest{
		OpID: task.OperationID, RunID: task.RunID, JobID: task.JobID, Snapshot: wireSnapshot(task.Target),
		SQLiteSnapshot: task.SQLiteSnapshot, SampleFiles: task.SampleFiles}})
	if err != nil {
		return fmt.Errorf("encode verify task %s: %w", task.OperationID, err)
	}
	_, err = h.Dispatch(ctx, storage.AgentTask{ID: task.OperationID, AgentID: node, RunID: task.RunID,
		Kind: storage.AgentTaskVerify, PayloadJSON: string(payload)}, nil)
	return err
}

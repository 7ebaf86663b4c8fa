// Package protocol defines the messages of the Hub ↔ Agent WebSocket, protocol v1, as the
// original (Syt100/bastion) spells them, and a tolerant decoder: null, missing and unknown fields
// are accepted; bad JSON, an unknown type or a version other than 1 is reported so the reader can
// drop the frame. It uses the standard library only, so anyone can import it.
//
// Go extensions of v1 (ignored by an original peer, which drops unknown types and fields):
//   - task_result_ack {task_id}: the Hub has applied the result of task_id; the agent may stop
//     re-sending it. Without it the agent re-sends every unacknowledged result after a reconnect.
//   - hello.heartbeat_seconds: the agent's ping interval, so the Hub can set its read deadline
//     to three intervals instead of guessing.
//   - run_event.seq: per-task event numbers, so events re-sent after a reconnect are recorded once.
//     operation_event.seq does the same for restores.
//   - task.age_recipient and config_snapshot jobs' age_recipient: the public key of an encrypted
//     job, since agents keep no key store.
//   - restore_task.job_id and .snapshot: where the snapshot lives, so the agent reads it itself.
//   - snapshot_cleanup_task / snapshot_cleanup_result: incomplete-run cleanup in an agent's
//     directory (a delete that never removes a complete run).
//   - entries_list / entries_list_result: one page of a snapshot's entries index, read by the
//     agent from its own directory (the restore picker for snapshots only the agent can read).
//   - verify_task: a restore drill run on the agent, reported like a restore (operation_event,
//     operation_result, task_result_ack, cancel_operation_task).
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Version is the only protocol version spoken.
const Version = 1

// Message types.
const (
	TypeHello                    = "hello"
	TypePing                     = "ping"
	TypePong                     = "pong"
	TypeTask                     = "task"
	TypeAck                      = "ack"
	TypeRunEvent                 = "run_event"
	TypeTaskResult               = "task_result"
	TypeTaskResultAck            = "task_result_ack" // Go extension
	TypeCancelRunTask            = "cancel_run_task"
	TypeRestoreTask              = "restore_task"
	TypeCancelOperationTask      = "cancel_operation_task"
	TypeOperationEvent           = "operation_event"
	TypeOperationResult          = "operation_result"
	TypeSnapshotDeleteTask       = "snapshot_delete_task"
	TypeSnapshotDeleteEvent      = "snapshot_delete_event"
	TypeSnapshotDeleteResult     = "snapshot_delete_result"
	TypeSnapshotCleanupTask      = "snapshot_cleanup_task"   // Go extension
	TypeSnapshotCleanupResult    = "snapshot_cleanup_result" // Go extension
	TypeEntriesList              = "entries_list"            // Go extension
	TypeEntriesListResult        = "entries_list_result"     // Go extension
	TypeVerifyTask               = "verify_task"             // Go extension
	TypeFsList                   = "fs_list"
	TypeFsListResult             = "fs_list_result"
	TypeWebdavList               = "webdav_list"
	TypeWebdavListResult         = "webdav_list_result"
	TypeConfigSnapshot           = "config_snapshot"
	TypeConfigAck                = "config_ack"
	TypeSecretsSnapshot          = "secrets_snapshot"
	TypeArtifactStreamOpen       = "artifact_stream_open"
	TypeArtifactStreamOpenResult = "artifact_stream_open_result"
	TypeArtifactStreamPull       = "artifact_stream_pull"
	TypeArtifactStreamClose      = "artifact_stream_close"
)

// Words of hello.capabilities.control for the Go extensions an agent serves, so that the Hub
// does not send them to an agent that would drop them (an older agent never answers).
const (
	ControlEntriesList = TypeEntriesList
	ControlVerify      = "verify"
)

// Close codes the Hub uses when it ends an agent's socket on purpose.
const (
	// CloseReplaced: the same agent opened a newer connection; this one is obsolete.
	CloseReplaced = 4000
	// CloseRevoked: the agent was revoked. The agent stops and does not reconnect.
	CloseRevoked = 4001
	// CloseKeyRotated: the agent's key was rotated. The old key no longer authenticates, so the
	// agent stops until an operator puts the new key in agent.json.
	CloseKeyRotated = 4002
	// CloseInvalidHello: the hello was refused (larger than MaxHelloBytes, or a name that is not a
	// valid display name); the close reason says which. Nothing of it was stored. The agent
	// reconnects with its usual backoff.
	CloseInvalidHello = 4003
)

// Limits of hello, which the Hub stores (raw, as the agent's capabilities) and shows in the API.
const (
	// MaxHelloBytes bounds one hello frame; a real one is well under 1 KiB.
	MaxHelloBytes = 64 << 10
	// MinHeartbeat and MaxHeartbeat bound hello.heartbeat_seconds (and the agent's own interval):
	// a value outside is clamped, so a huge one cannot overflow a time.Duration.
	MinHeartbeat = 10 * time.Millisecond
	MaxHeartbeat = 3600 * time.Second
)

// HeartbeatInterval turns hello.heartbeat_seconds into an interval clamped to [MinHeartbeat,
// MaxHeartbeat]. ok is false for a value that says nothing (absent, zero, negative, NaN), for
// which the reader keeps its default.
func HeartbeatInterval(seconds *float64) (d time.Duration, ok bool) {
	if seconds == nil || !(*seconds > 0) { // !(x > 0) is also true for NaN
		return 0, false
	}
	// Compare in seconds before converting: 3600 fits, and float64→int64 of a huge value is
	// implementation-defined (on amd64 a negative duration, an instant read deadline).
	if *seconds >= MaxHeartbeat.Seconds() {
		return MaxHeartbeat, true
	}
	return max(time.Duration(*seconds*float64(time.Second)), MinHeartbeat), true
}

// ClampHeartbeat bounds an interval to [MinHeartbeat, MaxHeartbeat].
func ClampHeartbeat(d time.Duration) time.Duration { return min(max(d, MinHeartbeat), MaxHeartbeat) }

// Message is any protocol message.
type Message interface{ MessageType() string }

// Errors returned by Decode. A reader drops the frame on any of them.
var (
	ErrUnknownType = errors.New("unknown message type")
	ErrVersion     = errors.New("unsupported protocol version")
)

// Encode marshals m with its "type" and "v" fields.
func Encode(m Message) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.MessageType(), err)
	}
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("encode %s: not a JSON object", m.MessageType())
	}
	var b bytes.Buffer
	b.Grow(len(body) + 32)
	b.WriteString(`{"type":"`)
	b.WriteString(m.MessageType())
	b.WriteString(`","v":1`)
	if len(body) > 2 {
		b.WriteByte(',')
	}
	b.Write(body[1:])
	return b.Bytes(), nil
}

type header struct {
	Type string `json:"type"`
	V    *int   `json:"v"`
}

// Decode parses one text frame. It returns ErrUnknownType or ErrVersion (wrapped) for frames a
// reader must silently drop, and a JSON error for bad JSON.
func Decode(data []byte) (Message, error) {
	var h header
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	if h.V == nil || *h.V != Version {
		return nil, fmt.Errorf("decode %q: %w", h.Type, ErrVersion)
	}
	newMsg, ok := registry[h.Type]
	if !ok {
		return nil, fmt.Errorf("decode %q: %w", h.Type, ErrUnknownType)
	}
	m := newMsg()
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", h.Type, err)
	}
	return m, nil
}

var registry = map[string]func() Message{
	TypeHello:                    func() Message { return &Hello{} },
	TypePing:                     func() Message { return &Ping{} },
	TypePong:                     func() Message { return &Pong{} },
	TypeTask:                     func() Message { return &Task{} },
	TypeAck:                      func() Message { return &Ack{} },
	TypeRunEvent:                 func() Message { return &RunEvent{} },
	TypeTaskResult:               func() Message { return &TaskResult{} },
	TypeTaskResultAck:            func() Message { return &TaskResultAck{} },
	TypeCancelRunTask:            func() Message { return &CancelRunTask{} },
	TypeRestoreTask:              func() Message { return &RestoreTask{} },
	TypeCancelOperationTask:      func() Message { return &CancelOperationTask{} },
	TypeOperationEvent:           func() Message { return &OperationEventMsg{} },
	TypeOperationResult:          func() Message { return &OperationResultMsg{} },
	TypeSnapshotDeleteTask:       func() Message { return &SnapshotDeleteTask{} },
	TypeSnapshotDeleteEvent:      func() Message { return &SnapshotDeleteEvent{} },
	TypeSnapshotDeleteResult:     func() Message { return &SnapshotDeleteResult{} },
	TypeSnapshotCleanupTask:      func() Message { return &SnapshotCleanupTask{} },
	TypeSnapshotCleanupResult:    func() Message { return &SnapshotCleanupResult{} },
	TypeEntriesList:              func() Message { return &EntriesList{} },
	TypeEntriesListResult:        func() Message { return &EntriesListResult{} },
	TypeVerifyTask:               func() Message { return &VerifyTask{} },
	TypeFsList:                   func() Message { return &FsList{} },
	TypeFsListResult:             func() Message { return &FsListResult{} },
	TypeWebdavList:               func() Message { return &WebdavList{} },
	TypeWebdavListResult:         func() Message { return &WebdavListResult{} },
	TypeConfigSnapshot:           func() Message { return &ConfigSnapshot{} },
	TypeConfigAck:                func() Message { return &ConfigAck{} },
	TypeSecretsSnapshot:          func() Message { return &SecretsSnapshot{} },
	TypeArtifactStreamOpen:       func() Message { return &ArtifactStreamOpen{} },
	TypeArtifactStreamOpenResult: func() Message { return &ArtifactStreamOpenResult{} },
	TypeArtifactStreamPull:       func() Message { return &ArtifactStreamPull{} },
	TypeArtifactStreamClose:      func() Message { return &ArtifactStreamClose{} },
}

package protocol

import "encoding/json"

// Optional fields are pointers (or json.RawMessage) without omitempty, so they go out as null,
// as the original sends them; readers accept null, absence and unknown fields alike.

// Hello is the agent's first message on a connection.
type Hello struct {
	AgentID      string       `json:"agent_id"` // ignored by the Hub: identity comes from the key
	Name         *string      `json:"name"`
	Info         AgentInfo    `json:"info"`
	Capabilities Capabilities `json:"capabilities"`
	// HeartbeatSeconds is a Go extension: the agent's ping interval.
	HeartbeatSeconds *float64 `json:"heartbeat_seconds,omitempty"`
	// StageEvents is a Go extension: the agent sends the scan, packaging and upload events of its
	// runs itself, so the Hub adds none when their progress changes stage.
	StageEvents bool `json:"stage_events,omitempty"`
}

type AgentInfo struct {
	Version string `json:"version"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

type Capabilities struct {
	Backup  []string `json:"backup"`
	Control []string `json:"control"`
	Drivers *Drivers `json:"drivers"`
}

type Drivers struct {
	Source []DriverID     `json:"source"`
	Target []TargetDriver `json:"target"`
}

type DriverID struct {
	Kind    string `json:"kind"`
	Version int    `json:"version"`
}

type TargetDriver struct {
	Kind         string             `json:"kind"`
	Version      int                `json:"version"`
	Capabilities TargetCapabilities `json:"capabilities"`
}

type TargetCapabilities struct {
	SupportsArchiveRollingUpload bool `json:"supports_archive_rolling_upload"`
	SupportsRawTreeDirectUpload  bool `json:"supports_raw_tree_direct_upload"`
	SupportsCleanupRun           bool `json:"supports_cleanup_run"`
	SupportsRestoreReader        bool `json:"supports_restore_reader"`
}

type Ping struct{}
type Pong struct{}

// Task asks the agent to run a backup. TaskID equals the run id.
type Task struct {
	TaskID string     `json:"task_id"`
	Task   BackupTask `json:"task"`
}

type BackupTask struct {
	RunID              string              `json:"run_id"`
	JobID              string              `json:"job_id"`
	StartedAt          int64               `json:"started_at"`
	Spec               json.RawMessage     `json:"spec"`
	SourceDriver       *DriverID           `json:"source_driver"`
	TargetDriver       *DriverID           `json:"target_driver"`
	TargetCapabilities *TargetCapabilities `json:"target_capabilities"`
	// AgeRecipient is a Go extension: the age public key ("age1…") of the spec's
	// encryption.key_name, for an encrypted job. Agents hold no key store; the Hub creates the key
	// on first use and sends only its public half.
	AgeRecipient *string `json:"age_recipient,omitempty"`
	// JobName is a Go extension: the job's name, for the BASTION_JOB_NAME of its hooks.
	JobName string `json:"job_name,omitempty"`
}

// Ack: the agent has received (and durably recorded) task_id.
type Ack struct {
	TaskID string `json:"task_id"`
}

// RunEvent is a run log line, or (kind progress_snapshot) the run's latest progress.
type RunEvent struct {
	RunID   string          `json:"run_id"`
	Level   string          `json:"level"`
	Kind    string          `json:"kind"`
	Message string          `json:"message"`
	Fields  json.RawMessage `json:"fields"`
	// Seq is a Go extension: the agent numbers a task's events from 1 and re-sends the ones of
	// an unfinished task after a reconnect; the Hub applies each number once.
	Seq *int64 `json:"seq,omitempty"`
}

// Task result statuses.
const (
	StatusSuccess  = "success"
	StatusFailed   = "failed"
	StatusCanceled = "canceled"
)

// TaskResult is the terminal outcome of a task.
type TaskResult struct {
	TaskID  string          `json:"task_id"`
	RunID   string          `json:"run_id"`
	Status  string          `json:"status"`
	Summary json.RawMessage `json:"summary"`
	Error   *string         `json:"error"`
}

// TaskResultAck (Go extension) tells the agent the Hub has applied the result of TaskID, for
// backups and restores alike.
type TaskResultAck struct {
	TaskID string `json:"task_id"`
}

type CancelRunTask struct {
	RunID string `json:"run_id"`
}

// RestoreTask asks the agent to restore a run. TaskID equals the operation id.
type RestoreTask struct {
	TaskID string         `json:"task_id"`
	Task   RestoreRequest `json:"task"`
}

type RestoreRequest struct {
	OpID           string              `json:"op_id"`
	RunID          string              `json:"run_id"`
	Destination    *RestoreDestination `json:"destination"`
	DestinationDir string              `json:"destination_dir"` // legacy
	ConflictPolicy string              `json:"conflict_policy"`
	Selection      *RestoreSelection   `json:"selection"`
	// JobID and Snapshot are Go extensions: where the snapshot lives, so that the agent reads it
	// itself (its own directory, or WebDAV with its own credential of that name) instead of
	// pulling it through artifact streams.
	JobID    string          `json:"job_id,omitempty"`
	Snapshot *SnapshotTarget `json:"snapshot,omitempty"`
	// KeepSpecialBits (Go extension) restores setuid, setgid and sticky bits, which are
	// stripped otherwise; the Hub sends it only when an administrator asked for it.
	KeepSpecialBits bool `json:"keep_special_bits,omitempty"`
}

// SnapshotTarget is where a run's snapshot is stored, without credentials: the target driver's
// own object, passed through as it is stored ({type: local_dir, base_dir},
// {type: webdav, base_url, secret_name}, or another driver's fields).
type SnapshotTarget json.RawMessage

func (s SnapshotTarget) MarshalJSON() ([]byte, error) {
	if len(s) == 0 {
		return []byte("null"), nil
	}
	return s, nil
}

func (s *SnapshotTarget) UnmarshalJSON(b []byte) error {
	*s = append((*s)[:0], b...)
	return nil
}

type RestoreDestination struct {
	Type       string `json:"type"` // local_fs | webdav
	Directory  string `json:"directory,omitempty"`
	BaseURL    string `json:"base_url,omitempty"`
	SecretName string `json:"secret_name,omitempty"`
	Prefix     string `json:"prefix,omitempty"`
}

type RestoreSelection struct {
	Files []string `json:"files"`
	Dirs  []string `json:"dirs"`
}

type CancelOperationTask struct {
	OpID string `json:"op_id"`
}

type OperationEvent struct {
	OpID    string          `json:"op_id"`
	Level   string          `json:"level"`
	Kind    string          `json:"kind"`
	Message string          `json:"message"`
	Fields  json.RawMessage `json:"fields"`
	// Seq is a Go extension, as run_event.seq: the operation's event number from 1, so events
	// re-sent after a reconnect are recorded once.
	Seq *int64 `json:"seq,omitempty"`
}

type OperationResult struct {
	OpID    string          `json:"op_id"`
	Status  string          `json:"status"`
	Summary json.RawMessage `json:"summary"`
	Error   *string         `json:"error"`
}

type OperationEventMsg struct {
	Event OperationEvent `json:"event"`
}

type OperationResultMsg struct {
	Result OperationResult `json:"result"`
}

type SnapshotDeleteTask struct {
	Task SnapshotDelete `json:"task"`
}

type SnapshotDelete struct {
	RunID   string `json:"run_id"`
	JobID   string `json:"job_id"`
	BaseDir string `json:"base_dir"`
}

// SnapshotCleanupTask (Go extension) asks the agent to remove what an incomplete run left in one
// of its directories. Unlike a delete it never touches a run whose complete.json exists. An
// original agent drops the unknown type; the Hub then times out and retries.
type SnapshotCleanupTask struct {
	Task SnapshotDelete `json:"task"`
}

// Cleanup outcomes (snapshot_cleanup_result.status).
const (
	CleanupDeleted      = "deleted"
	CleanupSkipComplete = "skip_complete"
	CleanupSkipNotFound = "skip_not_found"
	CleanupFailed       = "failed"
)

// SnapshotCleanupResult (Go extension) answers a snapshot_cleanup_task.
type SnapshotCleanupResult struct {
	RunID     string  `json:"run_id"`
	Status    string  `json:"status"` // deleted | skip_complete | skip_not_found | failed
	ErrorKind *string `json:"error_kind"`
	Error     *string `json:"error"`
}

// EntriesList (Go extension) asks the agent for one page of the children of Prefix in a
// snapshot's entries index (entries.jsonl.zst), which it reads from Snapshot itself: the restore
// picker for snapshots in the agent's own directories, which the Hub cannot read. The options
// are those of GET /api/runs/{id}/entries; zero values mean the defaults.
type EntriesList struct {
	RequestID    string          `json:"request_id"`
	RunID        string          `json:"run_id"`
	JobID        string          `json:"job_id"`
	Snapshot     *SnapshotTarget `json:"snapshot"`
	Prefix       string          `json:"prefix"`
	Cursor       string          `json:"cursor,omitempty"`
	Limit        int             `json:"limit,omitempty"`
	Q            string          `json:"q,omitempty"`
	Kind         string          `json:"kind,omitempty"` // file | dir | symlink
	HideDotfiles bool            `json:"hide_dotfiles,omitempty"`
	FilesFirst   bool            `json:"files_first,omitempty"`
	MinSize      *int64          `json:"min_size,omitempty"`
	MaxSize      *int64          `json:"max_size,omitempty"`
}

// EntryChild is one child in an entries_list_result.
type EntryChild struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Kind string `json:"kind"` // file | dir | symlink | hardlink
	Size int64  `json:"size"`
}

// Error codes of entries_list_result besides a target's own (error_kind set).
const (
	EntriesInvalidCursor = "invalid_cursor"
	EntriesUnsupported   = "unsupported"
)

// EntriesListResult (Go extension) answers entries_list: a page (cursor = offset into the
// filtered, sorted children), or error_code/error_kind/error. error_kind is set when the
// snapshot's target failed (the kinds of targets.Error: not_found, permission, ...).
type EntriesListResult struct {
	RequestID  string       `json:"request_id"`
	Prefix     string       `json:"prefix"`
	Entries    []EntryChild `json:"entries"`
	NextCursor *string      `json:"next_cursor"`
	Total      int64        `json:"total"`
	ErrorCode  *string      `json:"error_code"`
	ErrorKind  *string      `json:"error_kind"`
	Error      *string      `json:"error"`
}

// VerifyTask (Go extension) asks the agent to verify a snapshot it can read (a restore drill into
// scratch space under its data directory, every file checked against the index). TaskID equals
// the operation id. It runs exactly once like a restore and reports the same way.
type VerifyTask struct {
	TaskID string        `json:"task_id"`
	Task   VerifyRequest `json:"task"`
}

type VerifyRequest struct {
	OpID     string          `json:"op_id"`
	RunID    string          `json:"run_id"`
	JobID    string          `json:"job_id"`
	Snapshot *SnapshotTarget `json:"snapshot"`
	// SQLiteSnapshot names the database inside the snapshot to integrity-check; empty skips it.
	SQLiteSnapshot string `json:"sqlite_snapshot,omitempty"`
	// SampleFiles > 0 (a restore_test drill) restores and checks only that many random files
	// plus the largest one. An older agent ignores it and checks every file.
	SampleFiles int `json:"sample_files,omitempty"`
}

type SnapshotDeleteEvent struct {
	RunID   string          `json:"run_id"`
	Level   string          `json:"level"`
	Kind    string          `json:"kind"`
	Message string          `json:"message"`
	Fields  json.RawMessage `json:"fields"`
}

// Snapshot delete outcomes (snapshot_delete_result.status).
const (
	DeleteSuccess  = "success"
	DeleteNotFound = "not_found"
	DeleteFailed   = "failed"
)

type SnapshotDeleteResult struct {
	RunID     string  `json:"run_id"`
	Status    string  `json:"status"` // success | not_found | failed
	ErrorKind *string `json:"error_kind"`
	Error     *string `json:"error"`
}

// ListOptions are the paging, filter and sort fields shared by fs_list and webdav_list.
type ListOptions struct {
	Cursor       *string `json:"cursor"`
	Limit        *int    `json:"limit"`
	Q            *string `json:"q"`
	Kind         *string `json:"kind"`
	HideDotfiles *bool   `json:"hide_dotfiles"`
	TypeSort     *string `json:"type_sort"`
	SortBy       *string `json:"sort_by"`
	SortDir      *string `json:"sort_dir"`
	SizeMinBytes *int64  `json:"size_min_bytes"`
	SizeMaxBytes *int64  `json:"size_max_bytes"`
}

type FsList struct {
	RequestID string `json:"request_id"`
	Path      string `json:"path"`
	ListOptions
}

type FsEntry struct {
	Name  string `json:"name"`
	Path  string `json:"path"`
	Kind  string `json:"kind"` // dir | file | symlink | other
	Size  int64  `json:"size"`
	Mtime *int64 `json:"mtime"`
}

type FsListResult struct {
	RequestID    string          `json:"request_id"`
	Entries      []FsEntry       `json:"entries"`
	NextCursor   *string         `json:"next_cursor"`
	Total        *int64          `json:"total"`
	ErrorCode    *string         `json:"error_code"`
	ErrorDetails json.RawMessage `json:"error_details"`
	Error        *string         `json:"error"`
}

type WebdavList struct {
	RequestID  string `json:"request_id"`
	BaseURL    string `json:"base_url"`
	SecretName string `json:"secret_name"`
	Path       string `json:"path"`
	ListOptions
}

type WebdavListResult struct {
	RequestID  string    `json:"request_id"`
	Entries    []FsEntry `json:"entries"`
	NextCursor *string   `json:"next_cursor"`
	Total      *int64    `json:"total"`
	ErrorCode  *string   `json:"error_code"`
	Error      *string   `json:"error"`
}

// ConfigSnapshot is the agent's desired configuration: its jobs, with specs as the Hub resolved
// them.
type ConfigSnapshot struct {
	NodeID     string      `json:"node_id"`
	SnapshotID string      `json:"snapshot_id"`
	IssuedAt   int64       `json:"issued_at"`
	Jobs       []ConfigJob `json:"jobs"`
}

type ConfigJob struct {
	JobID            string          `json:"job_id"`
	Name             string          `json:"name"`
	Schedule         *string         `json:"schedule"`
	ScheduleTimezone *string         `json:"schedule_timezone"`
	OverlapPolicy    string          `json:"overlap_policy"`
	UpdatedAt        int64           `json:"updated_at"`
	Spec             json.RawMessage `json:"spec"`
	// AgeRecipient is a Go extension, as in a backup task: the public key of an encrypted job,
	// so that the agent can run it offline.
	AgeRecipient *string `json:"age_recipient,omitempty"`
}

type ConfigAck struct {
	SnapshotID string `json:"snapshot_id"`
}

type SecretsSnapshot struct {
	NodeID   string `json:"node_id"`
	IssuedAt int64  `json:"issued_at"`
	// WebDAV is the original's webdav-only list. A Hub still fills it for agents that know no
	// other field; Credentials reads it when Secrets is absent (a Hub that predates Secrets).
	WebDAV []WebDAVSecret `json:"webdav"`
	// Secrets (Go extension) holds the credentials of every target driver's secret kind.
	Secrets             []NodeSecret  `json:"secrets,omitempty"`
	BackupAgeIdentities []AgeIdentity `json:"backup_age_identities"`
}

// NodeSecret is one credential of a node: the secret kind a target driver reads (e.g. "webdav"),
// its name and its payload as the Hub stores it (for webdav {"username","password"}).
type NodeSecret struct {
	Kind      string          `json:"kind"`
	Name      string          `json:"name"`
	Payload   json.RawMessage `json:"payload"`
	UpdatedAt int64           `json:"updated_at"`
	// OriginsBound and AllowedOrigins are as in WebDAVSecret.
	OriginsBound   bool     `json:"origins_bound,omitempty"`
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
}

// Credentials are the snapshot's credentials in the generic shape: Secrets when the Hub sent
// them, else the legacy WebDAV list.
func (s *SecretsSnapshot) Credentials() []NodeSecret {
	if s.Secrets != nil {
		return s.Secrets
	}
	out := make([]NodeSecret, 0, len(s.WebDAV))
	for _, w := range s.WebDAV {
		payload, _ := json.Marshal(struct {
			Username string `json:"username"`
			Password string `json:"password"`
		}{w.Username, w.Password})
		out = append(out, NodeSecret{Kind: "webdav", Name: w.Name, Payload: payload, UpdatedAt: w.UpdatedAt,
			OriginsBound: w.OriginsBound, AllowedOrigins: w.AllowedOrigins})
	}
	return out
}

type WebDAVSecret struct {
	Name      string `json:"name"`
	Username  string `json:"username"`
	Password  string `json:"password"`
	UpdatedAt int64  `json:"updated_at"`
	// OriginsBound says the Hub binds credentials to origins (Go rewrite): the agent then sends
	// this credential only to AllowedOrigins (scheme://host:port; none: nowhere). A Hub that
	// predates the binding leaves it false and the agent relies on the Hub's own checks.
	OriginsBound   bool     `json:"origins_bound,omitempty"`
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
}

type AgeIdentity struct {
	Name      string `json:"name"`
	Identity  string `json:"identity"`
	UpdatedAt int64  `json:"updated_at"`
}

type ArtifactStreamOpen struct {
	Req struct {
		StreamID string  `json:"stream_id"`
		OpID     string  `json:"op_id"`
		RunID    string  `json:"run_id"`
		Artifact string  `json:"artifact"`
		Path     *string `json:"path"`
	} `json:"req"`
}

type ArtifactStreamOpenResult struct {
	Res struct {
		StreamID string  `json:"stream_id"`
		Size     *int64  `json:"size"`
		Error    *string `json:"error"`
	} `json:"res"`
}

type ArtifactStreamPull struct {
	Req struct {
		StreamID string `json:"stream_id"`
		MaxBytes int    `json:"max_bytes"`
	} `json:"req"`
}

type ArtifactStreamClose struct {
	Req struct {
		StreamID string `json:"stream_id"`
	} `json:"req"`
}

func (*Hello) MessageType() string                    { return TypeHello }
func (*Ping) MessageType() string                     { return TypePing }
func (*Pong) MessageType() string                     { return TypePong }
func (*Task) MessageType() string                     { return TypeTask }
func (*Ack) MessageType() string                      { return TypeAck }
func (*RunEvent) MessageType() string                 { return TypeRunEvent }
func (*TaskResult) MessageType() string               { return TypeTaskResult }
func (*TaskResultAck) MessageType() string            { return TypeTaskResultAck }
func (*CancelRunTask) MessageType() string            { return TypeCancelRunTask }
func (*RestoreTask) MessageType() string              { return TypeRestoreTask }
func (*CancelOperationTask) MessageType() string      { return TypeCancelOperationTask }
func (*OperationEventMsg) MessageType() string        { return TypeOperationEvent }
func (*OperationResultMsg) MessageType() string       { return TypeOperationResult }
func (*SnapshotDeleteTask) MessageType() string       { return TypeSnapshotDeleteTask }
func (*SnapshotDeleteEvent) MessageType() string      { return TypeSnapshotDeleteEvent }
func (*SnapshotCleanupTask) MessageType() string      { return TypeSnapshotCleanupTask }
func (*SnapshotCleanupResult) MessageType() string    { return TypeSnapshotCleanupResult }
func (*SnapshotDeleteResult) MessageType() string     { return TypeSnapshotDeleteResult }
func (*EntriesList) MessageType() string              { return TypeEntriesList }
func (*EntriesListResult) MessageType() string        { return TypeEntriesListResult }
func (*VerifyTask) MessageType() string               { return TypeVerifyTask }
func (*FsList) MessageType() string                   { return TypeFsList }
func (*FsListResult) MessageType() string             { return TypeFsListResult }
func (*WebdavList) MessageType() string               { return TypeWebdavList }
func (*WebdavListResult) MessageType() string         { return TypeWebdavListResult }
func (*ConfigSnapshot) MessageType() string           { return TypeConfigSnapshot }
func (*ConfigAck) MessageType() string                { return TypeConfigAck }
func (*SecretsSnapshot) MessageType() string          { return TypeSecretsSnapshot }
func (*ArtifactStreamOpen) MessageType() string       { return TypeArtifactStreamOpen }
func (*ArtifactStreamOpenResult) MessageType() string { return TypeArtifactStreamOpenResult }
func (*ArtifactStreamPull) MessageType() string       { return TypeArtifactStreamPull }
func (*ArtifactStreamClose) MessageType() string      { return TypeArtifactStreamClose }

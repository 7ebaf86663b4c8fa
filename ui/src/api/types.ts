// Every JSON shape the UI exchanges with the Hub, in one file, so that aligning with the backend is
// a change here and nowhere else. Shapes follow shared/spec/hub.md §3–§7, backup.md §2/§13,
// notifications.md §7 and agent-protocol.md §1. Timestamps are unix seconds unless a name says
// otherwise. Fields marked "assumed" are not pinned by the spec; see docs/ui-development.md.

export type NodeId = 'hub' | string

// ---- errors ----
export interface ApiViolation {
  field: string
  reason: string
  params?: Record<string, unknown>
}
export interface ApiErrorDetails {
  reason?: string
  field?: string
  params?: Record<string, unknown>
  violations?: ApiViolation[]
  [key: string]: unknown
}
export interface ApiErrorBody {
  error: string
  message: string
  details?: ApiErrorDetails
  request_id?: string
}

// ---- system, setup, session ----
export interface SystemInfo {
  version: string
  build_time_unix?: number | null
  insecure_http: boolean
  hub_timezone: string
}
export interface SetupStatus {
  needs_setup: boolean
}
/** What a user may do: admin everything; operator runs, cancels, restores, verifies; viewer reads. */
export type Role = 'admin' | 'operator' | 'viewer'
export const ROLES: Role[] = ['admin', 'operator', 'viewer']
export interface SessionInfo {
  authenticated: boolean
  csrf_token?: string
  user_id?: number
  username?: string
  role?: Role
}
export interface LoginResponse {
  csrf_token: string
  user_id: number
  username: string
  role: Role
}
/** A Hub account (GET /api/users, admin only). */
export interface User {
  id: number
  username: string
  role: Role
  created_at: number
  updated_at: number
}
/** An API token as listed (GET /api/tokens); the token itself is shown only when created. */
export interface ApiToken {
  id: number
  name: string
  role: Role
  created_at: number
  expires_at: number | null
  last_used_at: number | null
  created_by: string
  created_by_id: number
  expired: boolean
}
export interface CreatedApiToken {
  id: number
  token: string
  name: string
  role: Role
  created_at: number
  expires_at: number | null
}
/** One of the signed-in user's sessions (GET /api/sessions); id is a public name, not the cookie. */
export interface UserSession {
  id: string
  created_at: number
  expires_at: number
  last_seen_at: number
  client_ip: string
  user_agent: string
  current: boolean
}
export interface UserSessionList {
  items: UserSession[]
  max_sessions: number
}

// ---- paging ----
export interface Page<T> {
  items: T[]
  page: number
  page_size: number
  total: number
}
export interface CursorPage<T> {
  items: T[]
  next_cursor?: string | null
}

// ---- job spec (backup.md §2, legacy v1 as the UI sends it) ----
export type JobType = 'filesystem' | 'sqlite' | 'vaultwarden'
export type SymlinkPolicy = 'keep' | 'follow' | 'skip'
export type HardlinkPolicy = 'copy' | 'keep'
export type ErrorPolicy = 'fail_fast' | 'skip_fail' | 'skip_ok'
export type SnapshotMode = 'off' | 'auto' | 'required'
export type ConsistencyPolicy = 'warn' | 'fail' | 'ignore'

export interface FilesystemSource {
  paths: string[]
  root?: string
  pre_scan: boolean
  include: string[]
  exclude: string[]
  symlink_policy: SymlinkPolicy
  hardlink_policy: HardlinkPolicy
  error_policy: ErrorPolicy
  snapshot_mode: SnapshotMode
  snapshot_provider: string | null
  consistency_policy: ConsistencyPolicy
  consistency_fail_threshold: number | null
  upload_on_consistency_failure: boolean | null
}
export interface SqliteSource {
  path: string
  integrity_check: boolean
}
export interface VaultwardenSource {
  data_dir: string
  consistency_policy: ConsistencyPolicy
  consistency_fail_threshold: number | null
  upload_on_consistency_failure: boolean | null
}

export type LocalDirTarget = { type: 'local_dir'; base_dir: string; part_size_bytes: number }
export type WebdavTarget = { type: 'webdav'; base_url: string; secret_name: string; part_size_bytes: number }
export type JobTarget = LocalDirTarget | WebdavTarget

export type Encryption = { type: 'none' } | { type: 'age_x25519'; key_name: string }
export interface PipelineSpec {
  format: 'archive_v1' | 'raw_tree_v1'
  encryption: Encryption
}
/** mode, and the destination names of each channel (src/channels) under the channel's name. */
export type NotificationsSpec = { mode: 'inherit' | 'custom' } & { [channel: string]: string[] | 'inherit' | 'custom' }
export interface RetentionPolicy {
  enabled: boolean
  keep_last: number | null
  keep_days: number | null
  // GFS rules (restic forget semantics, periods in the job's timezone); absent when unset.
  keep_hourly?: number | null
  keep_daily?: number | null
  keep_weekly?: number | null
  keep_monthly?: number | null
  keep_yearly?: number | null
  max_delete_per_tick: number
  max_delete_per_day: number
}

export type HookOnFailure = 'abort' | 'continue'
export type HookWhen = 'always' | 'success' | 'failure'
export interface JobHooks {
  before?: { command: string[]; timeout_seconds: number; on_failure: HookOnFailure }
  after?: { command: string[]; timeout_seconds: number; when: HookWhen }
}

interface SpecCommon {
  v: 1
  pipeline: PipelineSpec
  notifications: NotificationsSpec
  retention: RetentionPolicy
  target: JobTarget
  hooks?: JobHooks
}
export type JobSpec =
  | (SpecCommon & { type: 'filesystem'; source: FilesystemSource })
  | (SpecCommon & { type: 'sqlite'; source: SqliteSource })
  | (SpecCommon & { type: 'vaultwarden'; source: VaultwardenSource })

// ---- jobs (hub.md §5, §6) ----
export type OverlapPolicy = 'reject' | 'queue'
export type MissedRunPolicy = 'run_once' | 'skip'
export type RunStatus = 'queued' | 'running' | 'success' | 'failed' | 'rejected' | 'canceled'

export interface JobListItem {
  id: string
  name: string
  agent_id: string | null
  schedule: string | null
  schedule_timezone: string
  overlap_policy: OverlapPolicy
  missed_run_policy?: MissedRunPolicy
  created_at: number
  updated_at: number
  archived_at?: number | null
  next_run_at?: number | null
  last_scheduled_at?: number | null
  latest_run_id?: string | null
  latest_run_status?: RunStatus | null
  latest_run_started_at?: number | null
  latest_run_ended_at?: number | null
  /** Scheduled verification (restore drills); null: none. */
  verification?: VerificationConfig | null
  /** When the job's last drill (or a verify of its latest snapshot) ended, and how. */
  last_verified_at?: number | null
  last_verify_status?: 'success' | 'failed' | 'canceled' | null
  last_verify_op_id?: string | null
  /** When a drill last succeeded. */
  last_proven_at?: number | null
  verify_pending_at?: number | null
  verify_running_op_id?: string | null
  /** Never proven, or not proven for longer than the Hub's stale_after_days. */
  verify_overdue?: boolean
}
export type VerifyMode = 'verify' | 'restore_test'
export interface VerificationConfig {
  schedule: string
  timezone?: string
  mode: VerifyMode
  /** restore_test only: that many random files plus the largest; 0 or absent: every file. */
  sample_files?: number
}
export interface VerificationSettings {
  stale_after_days: number
}
export interface JobDetail extends JobListItem {
  spec: JobSpec
}
export interface JobWriteBody {
  name: string
  agent_id: string | null
  schedule: string | null
  schedule_timezone: string
  overlap_policy: OverlapPolicy
  missed_run_policy: MissedRunPolicy
  spec: JobSpec
  verification: VerificationConfig | null
}
export type JobScope = 'all' | 'hub' | `agent:${string}`
export type JobSort = 'updated_desc' | 'updated_asc' | 'name_asc' | 'name_desc'
export interface JobListQuery {
  scope?: JobScope
  include_archived?: boolean
  q?: string
  latest_status?: 'all' | 'never' | RunStatus
  schedule_mode?: 'all' | 'manual' | 'scheduled'
  sort?: JobSort
  page?: number
  page_size?: number
}
export interface TriggerRunResponse {
  run_id: string
  status: RunStatus
}
export interface SchedulePreview {
  times: string[]
}

// ---- runs, events, progress (hub.md §7, backup.md §13) ----
export interface ProgressCounts {
  files: number
  dirs: number
  bytes: number
}
export interface Progress {
  v: 1
  kind: 'backup' | 'restore' | 'verify'
  stage: string
  ts: number
  done: ProgressCounts
  total?: ProgressCounts | null
  rate_bps?: number | null
  eta_seconds?: number | null
  detail?: Record<string, unknown> | null
}
export interface RunListItem {
  id: string
  job_id?: string
  status: RunStatus
  started_at: number
  ended_at: number | null
  error: string | null
  cancel_requested_at?: number | null
  cancel_reason?: string | null
}
/** A run in the Hub-wide list (GET /api/runs): where it ran and the digest of its summary. */
export interface GlobalRunItem extends RunListItem {
  job_id: string
  job_name: string
  node_id: string // "hub" or an agent id
  executed_offline: boolean
  issues_warnings_total: number | null
  issues_errors_total: number | null
  consistency_total: number | null
  consistency_signal_total: number | null
}
export interface RunsQuery {
  status?: string // one status or a comma-separated list
  job_id?: string
  node_id?: string
  from?: number
  to?: number
  cursor?: string
  limit?: number
}
export interface RunDetail {
  id: string
  job_id: string
  job_name?: string | null
  node_id?: string | null
  node_name?: string | null
  status: RunStatus
  started_at: number
  ended_at: number | null
  cancel_requested_at?: number | null
  cancel_requested_by_user_id?: number | null
  cancel_reason?: string | null
  progress?: Progress | null
  summary?: Record<string, unknown> | null
  error: string | null
}
export type EventLevel = 'debug' | 'info' | 'warn' | 'error' | string
/** One line of a run's or an operation's event log: the fields both logs share. */
export interface LogEvent {
  seq: number
  ts: number
  level: EventLevel
  kind: string
  message: string
  fields?: Record<string, unknown> | null
}
export interface RunEvent extends LogEvent {
  run_id: string
}
/** A run's whole event log in figures (GET /api/runs/{id}/event-console `summary`). */
export interface EventSummary {
  total: number
  max_seq: number
  by_level: Record<string, number>
  kinds: string[]
}
/** Filters and cursor of GET /api/runs/{id}/event-console; levels and kinds are comma lists. */
export interface EventConsoleQuery {
  levels?: string
  kinds?: string
  before_seq?: number
  after_seq?: number
  limit?: number
}
/** One page of a run's events, oldest first: the newest page, or the page before/after a seq. */
export interface EventConsolePage {
  run_id: string
  events: RunEvent[]
  first_seq: number | null
  last_seq: number | null
  has_older: boolean
  has_newer: boolean
  limit: number
  filters: { levels: string[]; kinds: string[] }
  summary: EventSummary
}

// ---- snapshots, retention ----
export type SnapshotStatus = 'present' | 'deleting' | 'deleted' | 'missing' | 'error'
export interface Snapshot {
  run_id: string
  job_id: string
  node_id: string
  target_type: string
  target_snapshot?: unknown
  artifact_format: string
  status: SnapshotStatus
  started_at: number
  ended_at: number
  pinned_at?: number | null
  source_files?: number | null
  source_dirs?: number | null
  source_bytes?: number | null
  transfer_bytes?: number | null
  last_error_kind?: string | null
  last_error?: string | null
}
export interface RetentionPreviewItem {
  run_id: string
  ended_at: number
  pinned: boolean
  source_bytes?: number | null
  transfer_bytes?: number | null
  reasons: string[]
  /** Per rule: why the snapshot is kept, or why it would go (absent from older Hubs). */
  details?: RetentionDetail[]
}
export interface RetentionDetail {
  rule: string
  kept: boolean
  period?: string
  rank?: number
  limit?: number
  superseded_by?: string
  text: string
}
export interface RetentionPreview {
  retention: RetentionPolicy
  keep_total: number
  delete_total: number
  keep: RetentionPreviewItem[]
  delete: RetentionPreviewItem[]
  scan_truncated?: boolean
  result_truncated?: boolean
}

// ---- browse ----
export type EntryKind = 'file' | 'dir' | 'symlink' | string
export interface FsEntry {
  name: string
  path: string
  kind: EntryKind
  size: number
  mtime?: number | null
}
export interface FsListResponse {
  path: string
  entries: FsEntry[]
  next_cursor?: string | null
  total?: number | null
}
export interface WebdavListRequest {
  base_url: string
  secret_name: string
  path: string
  cursor?: string | null
  limit?: number
}
export interface WebdavListResponse {
  path: string
  entries: FsEntry[]
  next_cursor?: string | null
}
export interface RunEntry {
  name?: string
  path: string
  kind: EntryKind
  size: number
}
export interface RunEntriesResponse {
  prefix: string
  cursor: number
  next_cursor?: number | null
  total?: number
  entries: RunEntry[]
}
export interface RunEntriesQuery {
  prefix?: string
  cursor?: number
  limit?: number
  q?: string
  kind?: 'file' | 'dir' | 'symlink'
  hide_dotfiles?: boolean
  /** The original's names; the Hub refuses parameters it does not know (400 invalid_query). */
  type_sort?: 'dir_first' | 'file_first'
  min_size_bytes?: number
  max_size_bytes?: number
}

// ---- restore / operations ----
export type ConflictPolicy = 'overwrite' | 'skip' | 'fail'
export type RestoreDestination =
  | { type: 'local_fs'; node_id: NodeId; directory: string }
  | { type: 'webdav'; base_url: string; secret_name: string; prefix: string }
export interface RestoreRequest {
  destination: RestoreDestination
  executor?: { node_id: NodeId }
  conflict_policy: ConflictPolicy
  selection?: { files: string[]; dirs: string[] }
  /** Keep setuid, setgid and sticky bits (stripped otherwise); administrators only. */
  keep_special_bits?: boolean
}
export type OperationStatus = 'running' | 'success' | 'failed' | 'canceled'
export interface Operation {
  id: string
  kind: 'restore' | 'verify'
  status: OperationStatus
  started_at: number
  ended_at: number | null
  progress?: Progress | null
  summary?: Record<string, unknown> | null
  error: string | null
  cancel_requested_at?: number | null
}
export interface OperationEvent extends LogEvent {
  op_id: string
}

// ---- agents ----
export type ConfigSyncStatus = 'synced' | 'pending' | 'error' | 'offline'
export interface Agent {
  id: string
  name: string | null
  revoked: boolean
  last_seen_at: number | null
  online: boolean
  labels: string[]
  config_sync_status: ConfigSyncStatus
  last_config_sync_error?: string | null
  created_at?: number
}
/** GET /api/fleet/{id}: one agent as the agent page shows it. */
export type FleetStatus = 'online' | 'offline' | 'revoked'
export interface FleetAgentDetail {
  agent: {
    id: string
    name: string | null
    status: FleetStatus
    created_at: number
    last_seen_at: number | null
    labels: string[]
    version: string | null
    os: string | null
    arch: string | null
    backup_kinds: string[]
    control_kinds: string[]
    connected: boolean
    revoked_at: number | null
    assigned_jobs_total: number
    pending_tasks_total: number
  }
  sync: {
    desired_snapshot_id: string | null
    desired_snapshot_at: number | null
    applied_snapshot_id: string | null
    applied_snapshot_at: number | null
    state: ConfigSyncStatus
    last_error_kind: string | null
    last_error: string | null
    last_attempt_at: number | null
  }
  recent_activity: { run_id: string; job_id: string; job_name: string; status: string; started_at: number; ended_at: number | null; error?: string | null }[]
  related_jobs: { id: string; name: string; schedule: string | null; updated_at: number }[]
  /** Which actions this agent's state allows (the caller's role is checked separately). */
  capabilities: { can_rotate_key: boolean; can_revoke: boolean; can_sync_now: boolean; can_manage_storage: boolean }
}
/** What POST /api/agents/{id}/sync-config-now did: pushed, nothing new to push, or waiting for the agent. */
export type SyncOutcome = 'sent' | 'unchanged' | 'pending_offline'
export interface SyncConfigResponse {
  outcome: SyncOutcome
}
export interface AgentListQuery {
  status?: 'all' | 'online' | 'offline' | 'revoked'
  q?: string
  labels?: string[]
  labels_mode?: 'and' | 'or'
  page?: number
  page_size?: number
}
export interface EnrollmentToken {
  token: string
  expires_at: number
  remaining_uses: number | null
}
export interface RotateKeyResponse {
  agent_id: string
  agent_key: string
}

// ---- secrets ----
/** webdav, or a notification channel's secretKind (src/channels). */
export type SecretKind = string
export interface SecretListItem {
  name: string
  updated_at: number
  /** Target credentials (webdav, s3) only: the servers (scheme://host:port) the credential may be sent to; [] = unbound. */
  allowed_origins?: string[]
}
export interface WebdavSecret {
  username: string
  password: string
  /** Read: the bound origins. Write: replaces them (URLs or origins); omitted keeps them. */
  allowed_origins?: string[]
  /** Write only: adds the origin of this URL (the server the credential is for). */
  base_url?: string
}
export interface S3Secret {
  access_key_id: string
  secret_access_key: string
  /** As WebdavSecret's: the S3 endpoints (scheme://host:port) the credential may be sent to. */
  allowed_origins?: string[]
}
/** A target credential: what /api/nodes/{node}/secrets/{kind} reads and writes. */
export type TargetSecret = WebdavSecret | S3Secret
/** The payload of a secret: a TargetSecret for webdav and s3; a channel's destination is its own (src/channels). */
export type SecretPayload = TargetSecret | Record<string, unknown>

// ---- notifications (notifications.md §7) ----
/** A channel name (src/channels). */
export type NotificationChannel = string
export type NotificationStatus = 'queued' | 'sending' | 'sent' | 'failed' | 'canceled'
/** Templates by key (each channel's, src/channels), the drill's under verify_failed. */
export type NotificationTemplates = { [key: string]: string | Record<string, string> | undefined } & {
  verify_failed?: Record<string, string>
}
export interface NotificationSettings {
  enabled: boolean
  channels: Record<NotificationChannel, { enabled: boolean }>
  templates: NotificationTemplates
}
export interface TemplateValidation {
  unknown_placeholders: { template: keyof NotificationTemplates; placeholder: string }[]
  placeholders: string[]
}
export interface NotificationDestination {
  channel: NotificationChannel
  name: string
  enabled: boolean
  updated_at?: number
}
export interface NotificationQueueItem {
  id: string
  run_id: string
  job_id: string
  job_name: string
  channel: NotificationChannel
  secret_name?: string
  destination: string
  status: NotificationStatus
  attempts: number
  next_attempt_at: number
  created_at: number
  updated_at: number
  last_error?: string | null
  last_error_kind?: string | null
  sent_at?: number | null
  destination_deleted: boolean
  destination_enabled: boolean
}
export interface NotificationQueueQuery {
  status?: NotificationStatus[]
  channel?: NotificationChannel[]
  page?: number
  page_size?: number
}
export interface NotificationQueuePage {
  items: NotificationQueueItem[]
  total: number
  page?: number
  page_size?: number
  next_cursor?: string | null
}

// ---- dashboard (GET /api/dashboard/overview?days=N; aggregated by the Hub) ----
export interface DashboardDay {
  day: string // YYYY-MM-DD in the Hub's time zone
  start: number // the day's first instant, unix seconds
  success: number
  failed: number
  bytes: number // stored size of the snapshots the day's runs left
}
export interface DashboardRun {
  id: string
  job_id: string
  job_name: string
  status: RunStatus
  started_at: number
  ended_at: number | null
  error: string | null
}
export interface DashboardNotification {
  id: string
  run_id: string
  job_id: string
  job_name: string
  channel: NotificationChannel
  destination: string
  attempts: number
  updated_at: number
  last_error: string | null
}
export interface DashboardSnapshot {
  run_id: string
  job_id: string
  job_name: string
  node_id: NodeId
  target_type: string
  started_at: number
  ended_at: number
  last_error_kind: string | null
  last_error: string | null
}
export interface DashboardOverview {
  timezone: string
  generated_at: number
  days: DashboardDay[] // oldest first; the last is today
  jobs_total: number // archived jobs included
  recent_runs: DashboardRun[] // newest started first
  agents: { online: number; offline: number; revoked: number; total: number }
  attention: {
    failed_runs: DashboardRun[] // started within the chart's days
    failed_runs_total: number
    failed_notifications: DashboardNotification[]
    failed_notifications_total: number
    error_snapshots: DashboardSnapshot[]
    error_snapshots_total: number
  }
  verification?: DashboardVerification
}
export interface DashboardVerification {
  stale_after_days: number
  jobs: number
  never_proven: number
  stale: number
  last_failed: number
  unproven: {
    job_id: string
    job_name: string
    last_proven_at: number | null
    last_verify_status: 'success' | 'failed' | 'canceled' | null
    last_verified_at: number | null
  }[]
}

// ---- audit log (GET /api/audit) ----
export type AuditActorKind = 'user' | 'token' | 'agent' | 'anonymous'
export type AuditOutcome = 'ok' | 'denied' | 'error'
export interface AuditItem {
  id: number
  at: number
  actor_kind: AuditActorKind
  user_id: number | null
  /** The user's name then; for a failed login, the name that was tried. */
  username: string | null
  token_id: number | null
  token_name: string | null
  client_ip: string
  /** "METHOD /route/{pattern}", e.g. "PUT /api/jobs/{id}". */
  action: string
  object_kind: string | null
  object_id: string | null
  request_id: string
  status: number
  outcome: AuditOutcome
}
export interface AuditQuery {
  user_id?: number
  username?: string
  action?: string
  from?: number
  to?: number
  cursor?: string
  limit?: number
}

/** GET /api/command-center: what needs attention now, most severe first. */
export type AttentionKind = 'failed_run' | 'stale_agent' | 'notification_failed' | 'verify_failed' | 'cleanup_failed' | 'cleanup_pending'
export type AttentionSeverity = 'critical' | 'warning' | 'info'
export interface AttentionItem {
  id: string
  kind: AttentionKind | string
  severity: AttentionSeverity
  title: string
  detail: string | null
  at: number
  link: string
  job_id?: string
  job_name?: string
  run_id?: string
  node_id?: string
  agent_id?: string
  agent_name?: string
  notification_id?: string
  channel?: string
  destination?: string
  op_id?: string
  count?: number
}
export interface CommandCenter {
  generated_at: number
  window_days: number
  since: number
  counts: { total: number; critical: number; warning: number; info: number; by_kind: Record<string, number> }
  items: AttentionItem[]
}

/** GET /api/integrations/storage: target credentials (names only) per node. */
export interface CredentialJob { id: string; name: string }
export interface IntegrationNode {
  node_id: string
  name: string
  is_hub: boolean
  online: boolean
  credentials: { kind: string; name: string; updated_at: number; jobs: CredentialJob[] }[]
  missing: { kind: string; name: string; jobs: CredentialJob[] }[]
}
export interface IntegrationsStorage { secret_kinds: string[]; nodes: IntegrationNode[] }

/** GET /api/integrations/distribution. */
export interface IntegrationsDistribution {
  secret_kinds: string[]
  credentials: { kind: string; name: string; on_hub: boolean; agents: string[]; missing_agents: string[] }[]
  agents: { agent_id: string; name: string; online: boolean; credentials: string[] }[]
  notifications: { channel: string; secret_kind: string; destinations: { name: string; enabled: boolean; updated_at: number }[] }[]
}

/** GET /api/integrations. */
export interface IntegrationsSummary {
  storage: { secret_kinds: string[]; nodes: number; credentials: number; jobs_using_credentials: number; missing: number }
  distribution: { agents: number; agents_with_credentials: number }
  notifications: { channels: number; destinations: number; enabled_destinations: number; unconfigured_channels: string[] }
}

/** Settings key hub_runtime_config_v1: every field optional, absent = not saved. */
export interface HubRuntimeConfig {
  hub_timezone?: string | null
  run_retention_days?: number | null
  audit_retention_days?: number | null
  incomplete_cleanup_days?: number | null
  public_base_url?: string | null
  log_filter?: string | null
  log_file?: string | null
  log_rotation?: string | null
  log_keep_files?: number | null
  default_backup_retention?: {
    enabled: boolean
    keep_last?: number | null
    keep_days?: number | null
    max_delete_per_tick: number
    max_delete_per_day: number
  } | null
}
export type ConfigSource = 'cli' | 'env' | 'db' | 'default'
export interface RuntimeFieldMeta {
  env: string
  source: ConfigSource
  editable: boolean
  overridden: boolean
  requires_restart: boolean
  pending_restart: boolean
}
export interface HubRuntimeConfigView {
  requires_restart: boolean
  pending_restart: string[]
  effective: Record<string, unknown>
  saved: HubRuntimeConfig
  fields: Record<string, RuntimeFieldMeta>
}

// ---- incomplete-run cleanup (GET /api/maintenance/incomplete-cleanup) ----
export type CleanupTaskStatus = 'queued' | 'running' | 'retrying' | 'blocked' | 'done' | 'ignored' | 'abandoned'
export interface CleanupTask {
  run_id: string
  job_id: string
  node_id: string
  target_type: string
  reason?: string
  status: CleanupTaskStatus | string
  attempts: number
  last_attempt_at: number | null
  next_attempt_at: number
  last_error_kind: string | null
  last_error: string | null
  ignored_at: number | null
  ignored_by_user_id: number | null
  ignore_reason: string | null
  created_at: number
  updated_at: number
  target_snapshot: unknown
}
export interface CleanupTaskQuery {
  page?: number
  page_size?: number
  status?: string
  target_type?: string
}

// ---- bulk operations (/api/bulk-operations) ----
/** What a bulk operation does to each agent it selected. */
export type BulkKind = 'agent_labels_add' | 'agent_labels_remove' | 'sync_config_now' | 'job_deploy' | 'webdav_secret_distribute'
export type BulkStatus = 'queued' | 'running' | 'done' | 'canceled'
export type BulkItemStatus = 'queued' | 'running' | 'success' | 'failed' | 'canceled'
/** Which agents: explicit ids, or every agent carrying the labels (all of them: and, any: or). */
export interface BulkSelector {
  node_ids?: string[]
  labels?: string[]
  labels_mode?: 'and' | 'or'
}
export type BulkPayload =
  | { labels: string[] } // agent_labels_add, agent_labels_remove
  | { source_job_id: string; name_template?: string } // job_deploy
  | { name: string; overwrite?: boolean } // webdav_secret_distribute
  | Record<string, never> // sync_config_now
export interface BulkCreateBody {
  kind: BulkKind
  selector: BulkSelector
  payload?: BulkPayload
}
/** Items counted by status, as the list and the detail carry them. */
export interface BulkCounts {
  total: number
  queued: number
  running: number
  success: number
  failed: number
  canceled: number
}
export interface BulkOperationListItem extends BulkCounts {
  id: string
  kind: BulkKind | string
  status: BulkStatus | string
  created_at: number
  updated_at: number
  started_at: number | null
  ended_at: number | null
  canceled_at: number | null
  created_by_user_id?: number | null
  created_by_username?: string | null
}
export interface BulkOperationItem {
  op_id: string
  agent_id: string
  agent_name: string | null
  status: BulkItemStatus | string
  attempts: number
  created_at: number
  updated_at: number
  started_at: number | null
  ended_at: number | null
  last_error_kind: string | null
  last_error: string | null
}
export interface BulkOperationDetail extends BulkOperationListItem {
  selector: BulkSelector | null
  payload: Record<string, unknown> | null
  items: BulkOperationItem[]
}
/** POST /api/bulk-operations/preview for a job deploy: each agent's clone name, or why it cannot. */
export interface JobDeployPreview {
  kind: 'job_deploy'
  source_job_id: string
  name_template: string
  items: { agent_id: string; agent_name: string | null; planned_name: string; valid: boolean; error: string | null }[]
}
/** …and for a credential distribution: per agent, update it or skip (it has one and no overwrite). */
export interface WebdavDistributePreview {
  kind: 'webdav_secret_distribute'
  secret_name: string
  overwrite: boolean
  items: { agent_id: string; agent_name: string | null; action: 'update' | 'skip' | string; note: string | null }[]
}
export type BulkPreview = JobDeployPreview | WebdavDistributePreview

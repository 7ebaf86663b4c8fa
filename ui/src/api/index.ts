// The Hub's HTTP API as typed functions: every route the UI calls is written here once.
import { http, seg } from './client'
import type * as T from './types'

export * from './types'
export { ApiError, configureClient, buildUrl } from './client'

export const api = {
  system: () => http.get<T.SystemInfo>('/api/system'),

  setupStatus: () => http.get<T.SetupStatus>('/api/setup/status'),
  setupInitialize: (username: string, password: string) =>
    http.post<void>('/api/setup/initialize', { username, password }),
  login: (username: string, password: string) => http.post<T.LoginResponse>('/api/auth/login', { username, password }),
  logout: () => http.post<void>('/api/auth/logout'),
  session: () => http.get<T.SessionInfo>('/api/session'),
  /** The signed-in user's sessions; revoking the current one signs out. */
  sessions: {
    list: () => http.get<T.UserSessionList>('/api/sessions'),
    revoke: (id: string) => http.del<void>(`/api/sessions/${seg(id)}`),
  },

  /** Accounts (admin only), and one's own password (everyone). */
  users: {
    list: () => http.get<{ items: T.User[] }>('/api/users'),
    create: (username: string, password: string, role: T.Role) => http.post<T.User>('/api/users', { username, password, role }),
    update: (id: number, body: { role?: T.Role; password?: string }) => http.put<T.User>(`/api/users/${id}`, body),
    remove: (id: number) => http.del<void>(`/api/users/${id}`),
    changeOwnPassword: (currentPassword: string, newPassword: string) =>
      http.put<void>('/api/users/me/password', { current_password: currentPassword, new_password: newPassword }),
  },
  /** API tokens for scripts (admin only): Authorization: Bearer <token>. */
  tokens: {
    list: () => http.get<{ items: T.ApiToken[] }>('/api/tokens'),
    create: (name: string, role: T.Role, expiresAt: number | null) =>
      http.post<T.CreatedApiToken>('/api/tokens', { name, role, expires_at: expiresAt }),
    remove: (id: number) => http.del<void>(`/api/tokens/${id}`),
  },

  jobs: {
    list: (q: T.JobListQuery = {}) => http.get<T.Page<T.JobListItem>>('/api/jobs', { ...q }),
    get: (id: string) => http.get<T.JobDetail>(`/api/jobs/${seg(id)}`),
    create: (body: T.JobWriteBody) => http.post<T.JobDetail>('/api/jobs', body),
    update: (id: string, body: T.JobWriteBody) => http.put<T.JobDetail>(`/api/jobs/${seg(id)}`, body),
    remove: (id: string) => http.del<void>(`/api/jobs/${seg(id)}`),
    archive: (id: string, cascadeSnapshots = false) =>
      http.post<void>(`/api/jobs/${seg(id)}/archive`, undefined, { cascade_snapshots: cascadeSnapshots }),
    unarchive: (id: string) => http.post<void>(`/api/jobs/${seg(id)}/unarchive`),
    runNow: (id: string) => http.post<T.TriggerRunResponse>(`/api/jobs/${seg(id)}/run`),
    /** Queues a restore drill of the job's latest snapshot; it starts when no backup of the job runs. */
    verifyNow: (id: string) => http.post<{ status: 'pending' }>(`/api/jobs/${seg(id)}/verify`),
    runs: (id: string) => http.get<T.RunListItem[]>(`/api/jobs/${seg(id)}/runs`),
    retentionPreview: (id: string, retention?: T.RetentionPolicy) =>
      http.post<T.RetentionPreview>(`/api/jobs/${seg(id)}/retention/preview`, retention ? { retention } : {}),
    snapshots: (id: string, q: { cursor?: string; limit?: number; status?: string } = {}) =>
      http.get<T.CursorPage<T.Snapshot>>(`/api/jobs/${seg(id)}/snapshots`, q),
    pin: (id: string, runId: string) => http.post<void>(`/api/jobs/${seg(id)}/snapshots/${seg(runId)}/pin`),
    unpin: (id: string, runId: string) => http.post<void>(`/api/jobs/${seg(id)}/snapshots/${seg(runId)}/unpin`),
    deleteSnapshot: (id: string, runId: string, force = false) =>
      http.post<void>(`/api/jobs/${seg(id)}/snapshots/${seg(runId)}/delete`, undefined, force ? { force: true } : undefined),
  },

  runtimeConfig: {
    get: () => http.get<T.HubRuntimeConfigView>('/api/settings/hub-runtime-config'),
    save: (s: T.HubRuntimeConfig) => http.put<void>('/api/settings/hub-runtime-config', s),
  },
  verificationSettings: {
    get: () => http.get<T.VerificationSettings>('/api/settings/verification'),
    save: (s: T.VerificationSettings) => http.put<T.VerificationSettings>('/api/settings/verification', s),
  },

  dashboard: {
    /** Per-day run counts and bytes over the last `days` days in the Hub's time zone, plus lists. */
    overview: (days = 14) => http.get<T.DashboardOverview>('/api/dashboard/overview', { days }),
  },

  commandCenter: (days = 7) => http.get<T.CommandCenter>('/api/command-center', { days }),

  integrations: {
    summary: () => http.get<T.IntegrationsSummary>('/api/integrations'),
    storage: () => http.get<T.IntegrationsStorage>('/api/integrations/storage'),
    distribution: () => http.get<T.IntegrationsDistribution>('/api/integrations/distribution'),
  },

  schedulePreview: (cron: string, timezone: string, count = 5, after?: string) =>
    http.get<T.SchedulePreview>('/api/schedule/preview', { cron, timezone, count, after }),

  /** The queue that removes what failed or interrupted runs left on their targets. */
  maintenance: {
    cleanup: (q: T.CleanupTaskQuery = {}) => http.get<T.Page<T.CleanupTask>>('/api/maintenance/incomplete-cleanup', { ...q }),
    retryNow: (runId: string) => http.post<void>(`/api/maintenance/incomplete-cleanup/${seg(runId)}/retry-now`),
    ignore: (runId: string, reason?: string) =>
      http.post<void>(`/api/maintenance/incomplete-cleanup/${seg(runId)}/ignore`, reason ? { reason } : undefined),
    unignore: (runId: string) => http.post<void>(`/api/maintenance/incomplete-cleanup/${seg(runId)}/unignore`),
  },
  /** The audit log, newest first, a cursor page at a time (administrators only). */
  audit: {
    list: (q: T.AuditQuery = {}) => http.get<T.CursorPage<T.AuditItem>>('/api/audit', { ...q }),
  },

  runs: {
    /** Every run across jobs and nodes, newest first, a cursor page at a time. */
    list: (q: T.RunsQuery = {}) => http.get<T.CursorPage<T.GlobalRunItem>>('/api/runs', { ...q }),
    get: (id: string) => http.get<T.RunDetail>(`/api/runs/${seg(id)}`),
    cancel: (id: string, reason?: string) => http.post<T.RunDetail>(`/api/runs/${seg(id)}/cancel`, reason ? { reason } : {}),
    eventsSocketPath: (id: string, after: number) => `/api/runs/${seg(id)}/events/ws?after=${after}`,
    /** A page of the run's events for the console, filtered by level and kind. */
    eventConsole: (id: string, q: T.EventConsoleQuery = {}) => http.get<T.EventConsolePage>(`/api/runs/${seg(id)}/event-console`, { ...q }),
    entries: (id: string, q: T.RunEntriesQuery = {}) => http.get<T.RunEntriesResponse>(`/api/runs/${seg(id)}/entries`, { ...q }),
    restore: (id: string, body: T.RestoreRequest) => http.post<{ op_id: string }>(`/api/runs/${seg(id)}/restore`, body),
    verify: (id: string) => http.post<{ op_id: string }>(`/api/runs/${seg(id)}/verify`),
  },

  operations: {
    get: (id: string) => http.get<T.Operation>(`/api/operations/${seg(id)}`),
    events: (id: string, after = 0) => http.get<T.OperationEvent[]>(`/api/operations/${seg(id)}/events`, after ? { after } : undefined),
    cancel: (id: string) => http.post<T.Operation>(`/api/operations/${seg(id)}/cancel`, {}),
  },

  nodes: {
    fsList: (node: T.NodeId, q: { path: string; cursor?: string | null; limit?: number }) =>
      http.get<T.FsListResponse>(`/api/nodes/${seg(node)}/fs/list`, { ...q }),
    webdavList: (node: T.NodeId, body: T.WebdavListRequest) =>
      http.post<T.WebdavListResponse>(`/api/nodes/${seg(node)}/webdav/list`, body),
    /**
     * The target credentials (of one target secret kind, e.g. webdav) of one node: "hub" is the
     * Hub's own (the same as /api/secrets/{kind}), an agent id is that agent's scope, which its
     * jobs, WebDAV listing and restores use.
     */
    secrets: (node: T.NodeId, kind = 'webdav') => {
      const base = `/api/nodes/${seg(node)}/secrets/${seg(kind)}`
      return {
        list: () => http.get<T.SecretListItem[]>(base),
        get: (name: string) => http.get<T.TargetSecret>(`${base}/${seg(name)}`),
        put: (name: string, payload: T.TargetSecret) => http.put<void>(`${base}/${seg(name)}`, payload),
        remove: (name: string) => http.del<void>(`${base}/${seg(name)}`),
      }
    },
  },

  agents: {
    list: (q: T.AgentListQuery = {}) => {
      const { labels, ...rest } = q
      return http.get<T.Page<T.Agent>>('/api/agents', { ...rest, 'labels[]': labels })
    },
    createEnrollmentToken: (ttlSeconds = 3600, remainingUses: number | null = null) =>
      http.post<T.EnrollmentToken>('/api/agents/enrollment-tokens', { ttl_seconds: ttlSeconds, remaining_uses: remainingUses }),
    revoke: (id: string) => http.post<void>(`/api/agents/${seg(id)}/revoke`),
    rotateKey: (id: string) => http.post<T.RotateKeyResponse>(`/api/agents/${seg(id)}/rotate-key`),
    syncNow: (id: string) => http.post<T.SyncConfigResponse>(`/api/agents/${seg(id)}/sync-config-now`),
    fleet: (id: string) => http.get<T.FleetAgentDetail>(`/api/fleet/${seg(id)}`),
    /** Every label in use with how many agents carry it. */
    labels: () => http.get<{ label: string; count: number }[]>('/api/agents/labels'),
  },

  /** Work on many agents at once, item by item, with a preview for job deploys and distributions. */
  bulk: {
    /** The Hub's list is its 50 newest operations, newest first. */
    list: async () => {
      const r = await http.get<T.BulkOperationListItem[] | { items: T.BulkOperationListItem[] }>('/api/bulk-operations')
      return Array.isArray(r) ? r : r.items
    },
    get: (id: string) => http.get<T.BulkOperationDetail>(`/api/bulk-operations/${seg(id)}`),
    preview: (body: T.BulkCreateBody) => http.post<T.BulkPreview>('/api/bulk-operations/preview', body),
    create: (body: T.BulkCreateBody) => http.post<{ op_id: string }>('/api/bulk-operations', body),
    cancel: (id: string) => http.post<void>(`/api/bulk-operations/${seg(id)}/cancel`),
    retryFailed: (id: string) => http.post<void>(`/api/bulk-operations/${seg(id)}/retry-failed`),
  },

  secrets: {
    list: (kind: T.SecretKind) => http.get<T.SecretListItem[]>(`/api/secrets/${kind}`),
    get: (kind: T.SecretKind, name: string) => http.get<T.SecretPayload>(`/api/secrets/${kind}/${seg(name)}`),
    put: (kind: T.SecretKind, name: string, payload: T.SecretPayload) =>
      http.put<void>(`/api/secrets/${kind}/${seg(name)}`, payload),
    remove: (kind: T.SecretKind, name: string) => http.del<void>(`/api/secrets/${kind}/${seg(name)}`),
  },

  notifications: {
    settings: () => http.get<T.NotificationSettings>('/api/notifications/settings'),
    saveSettings: (s: T.NotificationSettings) => http.put<void>('/api/notifications/settings', s),
    validateTemplates: (templates: T.NotificationTemplates) =>
      http.post<T.TemplateValidation>('/api/notifications/templates/validate', templates),
    destinations: () => http.get<T.NotificationDestination[]>('/api/notifications/destinations'),
    setEnabled: (channel: T.NotificationChannel, name: string, enabled: boolean) =>
      http.post<void>(`/api/notifications/destinations/${seg(channel)}/${seg(name)}/enabled`, { enabled }),
    test: (channel: T.NotificationChannel, name: string) =>
      http.post<unknown>(`/api/notifications/destinations/${seg(channel)}/${seg(name)}/test`),
    queue: (q: T.NotificationQueueQuery = {}) => http.get<T.NotificationQueuePage>('/api/notifications/queue', { ...q }),
    retryNow: (id: string) => http.post<void>(`/api/notifications/queue/${seg(id)}/retry-now`),
    cancel: (id: string) => http.post<void>(`/api/notifications/queue/${seg(id)}/cancel`),
  },
}

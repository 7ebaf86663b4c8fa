// Bulk operations: which kinds there are, who may start each, and when one is finished.
import type { BulkCounts, BulkKind } from '@/api'
import type { Action } from './permissions'

export const BULK_KINDS: BulkKind[] = ['agent_labels_add', 'agent_labels_remove', 'sync_config_now', 'job_deploy', 'webdav_secret_distribute']

// Starting a bulk operation needs what doing the same to one agent needs (the Hub checks it too).
const KIND_ACTION: Record<BulkKind, Action> = {
  agent_labels_add: 'agents.manage',
  agent_labels_remove: 'agents.manage',
  sync_config_now: 'agents.sync',
  job_deploy: 'jobs.edit',
  webdav_secret_distribute: 'secrets.manage',
}

export function kindAction(kind: BulkKind): Action {
  return KIND_ACTION[kind]
}

/** The Hub previews these on the server (clone names, conflicts, skips); the rest list the agents. */
export function serverPreview(kind: BulkKind): boolean {
  return kind === 'job_deploy' || kind === 'webdav_secret_distribute'
}

/** Whether an operation's status can still change: polling stops once it cannot. */
export function bulkActive(status: string | null | undefined): boolean {
  return status === 'queued' || status === 'running'
}

/** Whether Retry failed has anything to do: failed items on an operation not canceled. */
export function canRetryFailed(op: BulkCounts & { status: string }): boolean {
  return op.failed > 0 && op.status !== 'canceled'
}

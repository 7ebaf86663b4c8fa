// What each role may do in the UI: the one place pages ask (through the session store's can()).
// It mirrors the Hub's route table (httpapi/roles.go), which is what actually enforces it; the UI
// only hides or disables what would be refused.
import type { Role } from '@/api'

export type Action =
  | 'jobs.edit' // create, edit, archive, delete jobs
  | 'jobs.run'
  | 'runs.cancel'
  | 'runs.restore'
  | 'runs.restoreSpecialBits' // restore setuid, setgid and sticky bits
  | 'runs.verify' // verify a snapshot, run a drill now
  | 'snapshots.manage' // pin, unpin, delete snapshots
  | 'operations.cancel'
  | 'files.browse' // a node's files or a WebDAV server
  | 'agents.manage' // enroll, revoke, rotate keys, credentials
  | 'agents.sync'
  | 'notifications.manage' // settings, enable or disable destinations
  | 'notifications.operate' // send a test, retry or cancel queued ones
  | 'settings.edit'
  | 'secrets.manage' // read, add, edit, delete credentials
  | 'users.manage'
  | 'tokens.manage'
  | 'maintenance.retry' // retry an incomplete-run cleanup now
  | 'maintenance.ignore' // ignore or unignore a cleanup task
  | 'bulk.cancel' // cancel a bulk operation (retrying needs what starting its kind needs)

const RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 }

const NEEDS: Record<Action, Role> = {
  'jobs.edit': 'admin',
  'jobs.run': 'operator',
  'runs.cancel': 'operator',
  'runs.restore': 'operator',
  'runs.restoreSpecialBits': 'admin',
  'runs.verify': 'operator',
  'snapshots.manage': 'admin',
  'operations.cancel': 'operator',
  'files.browse': 'operator',
  'agents.manage': 'admin',
  'agents.sync': 'operator',
  'notifications.manage': 'admin',
  'notifications.operate': 'operator',
  'settings.edit': 'admin',
  'secrets.manage': 'admin',
  'users.manage': 'admin',
  'tokens.manage': 'admin',
  'maintenance.retry': 'operator',
  'maintenance.ignore': 'admin',
  'bulk.cancel': 'operator',
}

/** Whether a user with role may do action; no role (signed out, unknown) may do nothing. */
export function can(role: Role | null | undefined, action: Action): boolean {
  if (!role || !(role in RANK)) return false
  return RANK[role] >= RANK[NEEDS[action]]
}

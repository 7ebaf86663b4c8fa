import { describe, expect, it } from 'vitest'
import type { JobDetail, JobSpec } from '@/api/types'
import { formToRequest, formToSpec, jobToForm, newJobForm, specToForm, validateForm, MIB, type JobForm } from '@/lib/jobForm'

const retention = { enabled: true, keep_last: 7, keep_days: null, max_delete_per_tick: 50, max_delete_per_day: 200 }

const fsSource = {
  paths: ['/srv/app', '/etc'],
  pre_scan: false,
  include: ['**/*.conf'],
  exclude: ['**/node_modules'],
  symlink_policy: 'skip',
  hardlink_policy: 'keep',
  error_policy: 'skip_fail',
  snapshot_mode: 'auto',
  snapshot_provider: 'btrfs',
  consistency_policy: 'fail',
  consistency_fail_threshold: 3,
  upload_on_consistency_failure: true,
} as const

const specs: Record<string, JobSpec> = {
  filesystemLocalPlain: {
    v: 1,
    type: 'filesystem',
    pipeline: { format: 'archive_v1', encryption: { type: 'none' } },
    notifications: { mode: 'inherit', wecom_bot: [], email: [] },
    retention: { enabled: false, keep_last: null, keep_days: null, max_delete_per_tick: 50, max_delete_per_day: 200 },
    source: { ...fsSource, paths: [...fsSource.paths], include: [...fsSource.include], exclude: [...fsSource.exclude] },
    target: { type: 'local_dir', base_dir: '/backups', part_size_bytes: 256 * MIB },
  },
  filesystemWebdavAge: {
    v: 1,
    type: 'filesystem',
    pipeline: { format: 'archive_v1', encryption: { type: 'age_x25519', key_name: 'offsite' } },
    notifications: { mode: 'custom', wecom_bot: ['ops'], email: ['admin', 'oncall'], webhook: ['hook1'] },
    retention,
    source: { ...fsSource, paths: ['/home'], include: [], exclude: [], consistency_fail_threshold: null, upload_on_consistency_failure: null, snapshot_provider: null, consistency_policy: 'warn', symlink_policy: 'keep', hardlink_policy: 'copy', error_policy: 'fail_fast', snapshot_mode: 'off', pre_scan: true },
    target: { type: 'webdav', base_url: 'https://dav.example/backups', secret_name: 'nas', part_size_bytes: 64 * MIB },
  },
  sqlite: {
    v: 1,
    type: 'sqlite',
    pipeline: { format: 'archive_v1', encryption: { type: 'none' } },
    notifications: { mode: 'inherit', wecom_bot: [], email: [] },
    retention: { enabled: true, keep_last: null, keep_days: 30, max_delete_per_tick: 10, max_delete_per_day: 100 },
    source: { path: '/var/lib/app/app.db', integrity_check: true },
    target: { type: 'local_dir', base_dir: '/b', part_size_bytes: MIB },
  },
  vaultwarden: {
    v: 1,
    type: 'vaultwarden',
    pipeline: { format: 'archive_v1', encryption: { type: 'age_x25519', key_name: 'default' } },
    notifications: { mode: 'custom', wecom_bot: [], email: ['admin'], webhook: [] },
    retention: { enabled: true, keep_last: 10, keep_days: 90, max_delete_per_tick: 50, max_delete_per_day: 200 },
    source: { data_dir: '/srv/vw/data', consistency_policy: 'ignore', consistency_fail_threshold: null, upload_on_consistency_failure: null },
    target: { type: 'webdav', base_url: 'http://nas:8080/dav', secret_name: 'nas', part_size_bytes: 256 * MIB },
  },
}

describe('job editor mapping', () => {
  it.each(Object.entries(specs))('round-trips %s spec → form → spec unchanged', (_name, spec) => {
    expect(formToSpec(specToForm(spec))).toEqual(spec)
  })

  it('keeps spec parts the editor does not show', () => {
    const spec = structuredClone(specs.filesystemWebdavAge!) as JobSpec & { pipeline: { webdav?: unknown } }
    spec.pipeline.webdav = { raw_tree_direct: { mode: 'off', resume_by_size: true, limits: null } }
    ;(spec.source as { root?: string }).root = '/legacy'
    const back = formToSpec(specToForm(spec)) as typeof spec
    expect(back.pipeline.webdav).toEqual(spec.pipeline.webdav)
    expect((back.source as { root?: string }).root).toBe('/legacy')
  })

  it('fills defaults for a sparse spec', () => {
    const sparse = { v: 1, type: 'filesystem', source: { paths: ['/x'] }, target: { type: 'local_dir', base_dir: '/b' } } as unknown as JobSpec
    const f = specToForm(sparse)
    expect(f.fsPreScan).toBe(true)
    expect(f.fsSymlinkPolicy).toBe('keep')
    expect(f.partSizeMiB).toBe(256)
    expect(f.encryptionEnabled).toBe(false)
    expect(f.notificationsMode).toBe('inherit')
    expect(f.retention).toMatchObject({ enabled: false, maxDeletePerTick: 50, maxDeletePerDay: 200 })
  })

  it('builds the write body: node, schedule, timezone, policies', () => {
    const f: JobForm = { ...newJobForm('Europe/Berlin'), name: '  nightly ', node: 'agent-1' }
    f.fsPaths = [' /srv ', '', '/srv', '/etc']
    f.localBaseDir = ' /backups '
    f.schedule = { mode: 'simple', simple: { kind: 'daily', everyMinutes: 15, minute: 30, hour: 2, weekday: 0, monthday: 1 }, cron: '' }
    f.overlapPolicy = 'reject'
    f.missedRunPolicy = 'skip'
    const body = formToRequest(f)
    expect(body).toMatchObject({
      name: 'nightly',
      agent_id: 'agent-1',
      schedule: '30 2 * * *',
      schedule_timezone: 'Europe/Berlin',
      overlap_policy: 'reject',
      missed_run_policy: 'skip',
    })
    expect(body.spec.type).toBe('filesystem')
    expect((body.spec.source as { paths: string[] }).paths).toEqual(['/srv', '/etc'])
    expect(body.spec.target).toEqual({ type: 'local_dir', base_dir: '/backups', part_size_bytes: 256 * MIB })
    expect(formToRequest({ ...f, node: 'hub', schedule: { ...f.schedule, mode: 'manual' } })).toMatchObject({ agent_id: null, schedule: null })
  })

  it('sends empty lists when notifications inherit', () => {
    const f = { ...newJobForm(), notificationsMode: 'inherit' as const, notifyLists: { email: ['a'] } }
    expect(formToSpec(f).notifications).toEqual({ mode: 'inherit', wecom_bot: [], email: [] })
  })

  it('zeroes keep rules to null', () => {
    const f = newJobForm()
    f.retention = { enabled: true, keepLast: 0, keepDays: 5, maxDeletePerTick: 1, maxDeletePerDay: 1 }
    expect(formToSpec(f).retention).toEqual({ enabled: true, keep_last: null, keep_days: 5, max_delete_per_tick: 1, max_delete_per_day: 1 })
  })

  it('opens a job with everything the list and detail carry', () => {
    const job: JobDetail = {
      id: 'j', name: 'n', agent_id: null, schedule: '0 */6 * * 1-5', schedule_timezone: 'Asia/Shanghai', overlap_policy: 'reject',
      created_at: 1, updated_at: 2, spec: specs.sqlite!,
    }
    const f = jobToForm(job)
    expect(f).toMatchObject({ name: 'n', node: 'hub', timezone: 'Asia/Shanghai', overlapPolicy: 'reject', missedRunPolicy: 'run_once', type: 'sqlite' })
    expect(f.schedule).toMatchObject({ mode: 'cron', cron: '0 */6 * * 1-5' })
    expect(formToRequest(f).spec).toEqual(specs.sqlite)
    expect(jobToForm({ ...job, agent_id: 'a1', missed_run_policy: 'skip' })).toMatchObject({ node: 'a1', missedRunPolicy: 'skip' })
  })

  it('validates with the field names the API uses', () => {
    const f = newJobForm()
    expect(Object.keys(validateForm(f)).sort()).toEqual(['name', 'spec.source.paths', 'spec.target.base_dir'])
    f.name = 'x'
    f.fsPaths = ['/a']
    f.targetType = 'webdav'
    f.webdavBaseUrl = 'ftp://x'
    f.encryptionEnabled = true
    f.encryptionKeyName = ' '
    f.retention.enabled = true
    f.partSizeMiB = 0.5
    expect(Object.keys(validateForm(f)).sort()).toEqual([
      'spec.pipeline.encryption.key_name',
      'spec.retention',
      'spec.target.base_url',
      'spec.target.part_size_bytes',
      'spec.target.secret_name',
    ])
  })

  it('keeps choices the Hub refuses when opening a job, and flags each on the field the API names', () => {
    // engine/jobspec refuses these with reason "unsupported"; an older job may still carry them.
    const spec = structuredClone(specs.filesystemLocalPlain!) as Extract<JobSpec, { type: 'filesystem' }>
    spec.pipeline.format = 'raw_tree_v1'
    spec.source.symlink_policy = 'follow'
    spec.source.snapshot_mode = 'required'
    const f = { ...specToForm(spec), name: 'x' }
    expect(formToSpec(f)).toEqual(spec) // nothing is rewritten behind the user's back
    expect(validateForm(f)).toEqual({
      'spec.source.snapshot_mode': 'unsupported', // symlink_policy follow and raw_tree_v1 are supported
    })
    // the supported values pass
    f.format = 'archive_v1'
    f.fsSymlinkPolicy = 'skip'
    f.fsSnapshotMode = 'auto'
    expect(validateForm(f)).toEqual({})
  })

  it('refuses a plain file tree with encryption or for Vaultwarden, as the Hub does', () => {
    const spec = structuredClone(specs.filesystemLocalPlain!) as Extract<JobSpec, { type: 'filesystem' }>
    spec.pipeline.format = 'raw_tree_v1'
    const f = { ...specToForm(spec), name: 'x' }
    expect(validateForm(f)).toEqual({})
    expect(formToSpec(f).pipeline).toMatchObject({ format: 'raw_tree_v1', encryption: { type: 'none' } })
    f.encryptionEnabled = true
    expect(validateForm(f)).toEqual({ 'spec.pipeline.encryption': 'raw_tree_encryption' })
    f.encryptionEnabled = false
    f.type = 'vaultwarden'
    f.vaultwardenDataDir = '/vw'
    expect(validateForm(f)).toEqual({ 'spec.pipeline.format': 'raw_tree_vaultwarden' })
  })
})

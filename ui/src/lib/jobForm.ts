// The job editor's form model and its mapping to and from the job spec JSON (backup.md §2) and the
// job write body (hub.md §6). Editing keeps spec parts the form does not show (e.g. pipeline.webdav,
// a legacy filesystem `root`), so opening and saving a job never silently drops settings.
import type {
  ConsistencyPolicy,
  ErrorPolicy,
  HardlinkPolicy,
  JobDetail,
  JobSpec,
  JobType,
  JobWriteBody,
  HookOnFailure,
  HookWhen,
  JobHooks,
  MissedRunPolicy,
  NodeId,
  OverlapPolicy,
  RetentionPolicy,
  SnapshotMode,
  SymlinkPolicy,
  VerificationConfig,
  VerifyMode,
} from '@/api/types'
import { CHANNEL_NAMES, INHERIT_SPEC_LISTS } from '@/channels'
import { cronToSchedule, defaultSchedule, scheduleToCron, type ScheduleForm } from './schedule'
import { targetKind } from './targetKinds'

export const MIB = 1024 * 1024

/**
 * Choices the job spec names but this Hub refuses on save (engine/jobspec: "not supported by this
 * version yet"). The editor shows them disabled; a job that already carries one fails validation
 * on the field the API would name, so it is fixed before saving instead of after a round trip.
 */
export const UNSUPPORTED = {
  symlinkPolicy: [] as readonly SymlinkPolicy[],
  snapshotMode: ['required'] as readonly SnapshotMode[],
  format: [] as readonly JobForm['format'][],
}
export const DEFAULT_PART_SIZE_BYTES = 256 * MIB

export interface RetentionForm {
  enabled: boolean
  keepLast: number | null
  keepDays: number | null
  keepHourly?: number | null
  keepDaily?: number | null
  keepWeekly?: number | null
  keepMonthly?: number | null
  keepYearly?: number | null
  maxDeletePerTick: number
  maxDeletePerDay: number
}

/** The GFS rules: form key and spec key, in the order the editor shows them. */
export const GFS_RULES = [
  ['keepHourly', 'keep_hourly'],
  ['keepDaily', 'keep_daily'],
  ['keepWeekly', 'keep_weekly'],
  ['keepMonthly', 'keep_monthly'],
  ['keepYearly', 'keep_yearly'],
] as const

export const DEFAULT_HOOK_TIMEOUT = 300

/** A job's hooks as the editor shows them: argv lists, one argument per line, never a shell line. */
export interface HooksForm {
  beforeEnabled: boolean
  beforeCommand: string[]
  beforeTimeout: number
  beforeOnFailure: HookOnFailure
  afterEnabled: boolean
  afterCommand: string[]
  afterTimeout: number
  afterWhen: HookWhen
}

export const defaultHooks = (): HooksForm => ({
  beforeEnabled: false,
  beforeCommand: [],
  beforeTimeout: DEFAULT_HOOK_TIMEOUT,
  beforeOnFailure: 'abort',
  afterEnabled: false,
  afterCommand: [],
  afterTimeout: DEFAULT_HOOK_TIMEOUT,
  afterWhen: 'always',
})

export function hooksToSpec(h: HooksForm): JobHooks | undefined {
  const out: JobHooks = {}
  if (h.beforeEnabled) out.before = { command: [...h.beforeCommand], timeout_seconds: h.beforeTimeout, on_failure: h.beforeOnFailure }
  if (h.afterEnabled) out.after = { command: [...h.afterCommand], timeout_seconds: h.afterTimeout, when: h.afterWhen }
  return out.before || out.after ? out : undefined
}

export function hooksFromSpec(h: JobHooks | null | undefined): HooksForm {
  const f = defaultHooks()
  if (h?.before) {
    f.beforeEnabled = true
    f.beforeCommand = strs(h.before.command)
    f.beforeTimeout = numOrNull(h.before.timeout_seconds) ?? DEFAULT_HOOK_TIMEOUT
    f.beforeOnFailure = h.before.on_failure === 'continue' ? 'continue' : 'abort'
  }
  if (h?.after) {
    f.afterEnabled = true
    f.afterCommand = strs(h.after.command)
    f.afterTimeout = numOrNull(h.after.timeout_seconds) ?? DEFAULT_HOOK_TIMEOUT
    f.afterWhen = h.after.when === 'success' || h.after.when === 'failure' ? h.after.when : 'always'
  }
  return f
}

export interface JobForm {
  name: string
  node: NodeId
  type: JobType

  fsPaths: string[]
  fsInclude: string[]
  fsExclude: string[]
  fsPreScan: boolean
  fsSymlinkPolicy: SymlinkPolicy
  fsHardlinkPolicy: HardlinkPolicy
  fsErrorPolicy: ErrorPolicy
  fsSnapshotMode: SnapshotMode
  fsSnapshotProvider: string | null
  consistencyPolicy: ConsistencyPolicy
  consistencyFailThreshold: number | null
  uploadOnConsistencyFailure: boolean | null

  sqlitePath: string
  sqliteIntegrityCheck: boolean

  vaultwardenDataDir: string

  /** spec.target.type: one of targetKinds (lib/targetKinds.ts); the fields below are theirs. */
  targetType: string
  localBaseDir: string
  webdavBaseUrl: string
  webdavSecretName: string
  s3Endpoint: string
  s3Region: string
  s3Bucket: string
  s3Prefix: string
  s3PathStyle: boolean
  s3SecretName: string
  partSizeMiB: number

  format: 'archive_v1' | 'raw_tree_v1'
  encryptionEnabled: boolean
  encryptionKeyName: string

  schedule: ScheduleForm
  timezone: string
  overlapPolicy: OverlapPolicy
  missedRunPolicy: MissedRunPolicy

  notificationsMode: 'inherit' | 'custom'
  /** Destination names by channel name (src/channels), for mode custom. */
  notifyLists: Record<string, string[]>

  retention: RetentionForm
  hooks: HooksForm

  /** Scheduled verification: none, the weekly default, or a cron of the user's (job's timezone). */
  verifyPreset: VerifyPreset
  verifyCron: string
  verifyMode: VerifyMode
  verifySampleFiles: number

  /** Spec parts the editor does not show, kept verbatim on save. */
  preserved: { pipelineWebdav?: unknown; fsRoot?: string }
}

export type VerifyPreset = 'none' | 'weekly' | 'custom'
/** The "weekly" drill the editor offers: Sundays at 03:00 in the job's time zone. */
export const WEEKLY_VERIFY_CRON = '0 3 * * 0'

export const defaultRetention = (): RetentionForm => ({
  enabled: false,
  keepLast: null,
  keepDays: null,
  maxDeletePerTick: 50,
  maxDeletePerDay: 200,
})

export function newJobForm(timezone = 'UTC'): JobForm {
  return {
    name: '',
    node: 'hub',
    type: 'filesystem',
    fsPaths: [],
    fsInclude: [],
    fsExclude: [],
    fsPreScan: true,
    fsSymlinkPolicy: 'keep',
    fsHardlinkPolicy: 'copy',
    fsErrorPolicy: 'fail_fast',
    fsSnapshotMode: 'off',
    fsSnapshotProvider: null,
    consistencyPolicy: 'warn',
    consistencyFailThreshold: null,
    uploadOnConsistencyFailure: null,
    sqlitePath: '',
    sqliteIntegrityCheck: false,
    vaultwardenDataDir: '',
    targetType: 'local_dir',
    localBaseDir: '',
    webdavBaseUrl: '',
    webdavSecretName: '',
    s3Endpoint: '',
    s3Region: '',
    s3Bucket: '',
    s3Prefix: '',
    s3PathStyle: false,
    s3SecretName: '',
    partSizeMiB: DEFAULT_PART_SIZE_BYTES / MIB,
    format: 'archive_v1',
    encryptionEnabled: false,
    encryptionKeyName: 'default',
    schedule: defaultSchedule(),
    timezone,
    overlapPolicy: 'queue',
    missedRunPolicy: 'run_once',
    notificationsMode: 'inherit',
    notifyLists: {},
    verifyPreset: 'none',
    verifyCron: WEEKLY_VERIFY_CRON,
    verifyMode: 'verify',
    verifySampleFiles: 0,
    retention: defaultRetention(),
    hooks: defaultHooks(),
    preserved: {},
  }
}

const cleanList = (xs: string[]) => {
  const seen = new Set<string>()
  const out: string[] = []
  for (const raw of xs) {
    const x = raw.trim()
    if (x !== '' && !seen.has(x)) {
      seen.add(x)
      out.push(x)
    }
  }
  return out
}

export function retentionToSpec(r: RetentionForm): RetentionPolicy {
  const out: RetentionPolicy = {
    enabled: r.enabled,
    keep_last: r.keepLast && r.keepLast > 0 ? r.keepLast : null,
    keep_days: r.keepDays && r.keepDays > 0 ? r.keepDays : null,
    max_delete_per_tick: r.maxDeletePerTick,
    max_delete_per_day: r.maxDeletePerDay,
  }
  // GFS keys only when set, so a policy without them is sent exactly as before.
  for (const [fk, sk] of GFS_RULES) {
    const v = r[fk]
    if (v && v > 0) out[sk] = v
  }
  return out
}

export function retentionFromSpec(r: Partial<RetentionPolicy> | null | undefined): RetentionForm {
  const d = defaultRetention()
  if (!r) return d
  return {
    enabled: !!r.enabled,
    keepLast: r.keep_last ?? null,
    keepDays: r.keep_days ?? null,
    keepHourly: r.keep_hourly ?? null,
    keepDaily: r.keep_daily ?? null,
    keepWeekly: r.keep_weekly ?? null,
    keepMonthly: r.keep_monthly ?? null,
    keepYearly: r.keep_yearly ?? null,
    maxDeletePerTick: r.max_delete_per_tick ?? d.maxDeletePerTick,
    maxDeletePerDay: r.max_delete_per_day ?? d.maxDeletePerDay,
  }
}

export function formToSpec(f: JobForm): JobSpec {
  const pipeline: JobSpec['pipeline'] & { webdav?: unknown } = {
    format: f.format,
    encryption: f.encryptionEnabled ? { type: 'age_x25519', key_name: f.encryptionKeyName.trim() } : { type: 'none' },
  }
  if (f.preserved.pipelineWebdav !== undefined) pipeline.webdav = f.preserved.pipelineWebdav
  const partSize = Math.round(f.partSizeMiB * MIB)
  const target = { ...targetKind(f.targetType).toSpec(f), part_size_bytes: partSize } as JobSpec['target']
  const notifications: JobSpec['notifications'] =
    f.notificationsMode === 'custom'
      ? { mode: 'custom', ...Object.fromEntries(CHANNEL_NAMES.map((c) => [c, cleanList(f.notifyLists[c] ?? [])])) }
      : { mode: 'inherit', ...Object.fromEntries(INHERIT_SPEC_LISTS.map((c) => [c, []])) }
  const hooks = hooksToSpec(f.hooks ?? defaultHooks())
  const common = { v: 1 as const, pipeline, notifications, retention: retentionToSpec(f.retention), target, ...(hooks ? { hooks } : {}) }
  const consistency = {
    consistency_policy: f.consistencyPolicy,
    consistency_fail_threshold: f.consistencyFailThreshold,
    upload_on_consistency_failure: f.uploadOnConsistencyFailure,
  }
  switch (f.type) {
    case 'sqlite':
      return { ...common, type: 'sqlite', source: { path: f.sqlitePath.trim(), integrity_check: f.sqliteIntegrityCheck } }
    case 'vaultwarden':
      return { ...common, type: 'vaultwarden', source: { data_dir: f.vaultwardenDataDir.trim(), ...consistency } }
    case 'filesystem': {
      const source: Extract<JobSpec, { type: 'filesystem' }>['source'] = {
        paths: cleanList(f.fsPaths),
        pre_scan: f.fsPreScan,
        include: cleanList(f.fsInclude),
        exclude: cleanList(f.fsExclude),
        symlink_policy: f.fsSymlinkPolicy,
        hardlink_policy: f.fsHardlinkPolicy,
        error_policy: f.fsErrorPolicy,
        snapshot_mode: f.fsSnapshotMode,
        snapshot_provider: f.fsSnapshotProvider,
        ...consistency,
      }
      if (f.preserved.fsRoot) source.root = f.preserved.fsRoot
      return { ...common, type: 'filesystem', source }
    }
  }
}

export function formToRequest(f: JobForm): JobWriteBody {
  return {
    name: f.name.trim(),
    agent_id: f.node === 'hub' ? null : f.node,
    schedule: scheduleToCron(f.schedule),
    schedule_timezone: f.timezone.trim(),
    overlap_policy: f.overlapPolicy,
    missed_run_policy: f.missedRunPolicy,
    spec: formToSpec(f),
    verification: formToVerification(f),
  }
}

export function formToVerification(f: JobForm): VerificationConfig | null {
  if (f.verifyPreset === 'none') return null
  const v: VerificationConfig = {
    schedule: f.verifyPreset === 'weekly' ? WEEKLY_VERIFY_CRON : f.verifyCron.trim(),
    timezone: f.timezone.trim(),
    mode: f.verifyMode,
  }
  if (f.verifyMode === 'restore_test' && f.verifySampleFiles > 0) v.sample_files = f.verifySampleFiles
  return v
}

type Loose = Record<string, unknown>
const str = (v: unknown, d = ''): string => (typeof v === 'string' ? v : d)
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [])
const numOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null)
const boolOrNull = (v: unknown): boolean | null => (typeof v === 'boolean' ? v : null)

export function specToForm(spec: JobSpec, base: JobForm = newJobForm()): JobForm {
  const f: JobForm = { ...base, preserved: {} }
  f.type = spec.type
  const src = (spec.source ?? {}) as unknown as Loose
  if (spec.type === 'filesystem') {
    f.fsPaths = strs(src.paths)
    f.fsInclude = strs(src.include)
    f.fsExclude = strs(src.exclude)
    f.fsPreScan = src.pre_scan === undefined ? true : !!src.pre_scan
    f.fsSymlinkPolicy = str(src.symlink_policy, 'keep') as SymlinkPolicy
    f.fsHardlinkPolicy = str(src.hardlink_policy, 'copy') as HardlinkPolicy
    f.fsErrorPolicy = str(src.error_policy, 'fail_fast') as ErrorPolicy
    f.fsSnapshotMode = str(src.snapshot_mode, 'off') as SnapshotMode
    f.fsSnapshotProvider = typeof src.snapshot_provider === 'string' ? src.snapshot_provider : null
    if (typeof src.root === 'string' && src.root !== '') f.preserved.fsRoot = src.root
  } else if (spec.type === 'sqlite') {
    f.sqlitePath = str(src.path)
    f.sqliteIntegrityCheck = !!src.integrity_check
  } else {
    f.vaultwardenDataDir = str(src.data_dir)
  }
  if (spec.type !== 'sqlite') {
    f.consistencyPolicy = str(src.consistency_policy, 'warn') as ConsistencyPolicy
    f.consistencyFailThreshold = numOrNull(src.consistency_fail_threshold)
    f.uploadOnConsistencyFailure = boolOrNull(src.upload_on_consistency_failure)
  }

  const t = (spec.target ?? {}) as unknown as Loose
  const kind = targetKind(str(t.type))
  f.targetType = kind.type
  kind.fromSpec(f, t)
  f.partSizeMiB = (numOrNull(t.part_size_bytes) ?? DEFAULT_PART_SIZE_BYTES) / MIB

  const p = (spec.pipeline ?? {}) as unknown as Loose
  f.format = p.format === 'raw_tree_v1' ? 'raw_tree_v1' : 'archive_v1'
  const enc = (p.encryption ?? {}) as Loose
  f.encryptionEnabled = enc.type === 'age_x25519'
  f.encryptionKeyName = f.encryptionEnabled ? str(enc.key_name, 'default') : base.encryptionKeyName
  if (p.webdav !== undefined) f.preserved.pipelineWebdav = p.webdav

  const n = (spec.notifications ?? {}) as unknown as Loose
  f.notificationsMode = n.mode === 'custom' ? 'custom' : 'inherit'
  f.notifyLists = Object.fromEntries(CHANNEL_NAMES.map((c) => [c, strs(n[c])]))

  f.retention = retentionFromSpec(spec.retention)
  f.hooks = hooksFromSpec(spec.hooks)
  return f
}

export function jobToForm(job: JobDetail): JobForm {
  const base = newJobForm(job.schedule_timezone || 'UTC')
  const f = specToForm(job.spec, base)
  f.name = job.name
  f.node = job.agent_id ?? 'hub'
  f.schedule = cronToSchedule(job.schedule)
  f.timezone = job.schedule_timezone || 'UTC'
  f.overlapPolicy = job.overlap_policy
  f.missedRunPolicy = job.missed_run_policy ?? 'run_once'
  const v = job.verification
  if (v) {
    f.verifyPreset = v.schedule === WEEKLY_VERIFY_CRON ? 'weekly' : 'custom'
    f.verifyCron = v.schedule
    f.verifyMode = v.mode === 'restore_test' ? 'restore_test' : 'verify'
    f.verifySampleFiles = v.sample_files ?? 0
  }
  return f
}

/** Client-side checks that mirror the Hub's, keyed by the same field names the API reports. */
export function validateForm(f: JobForm): Record<string, string> {
  const errs: Record<string, string> = {}
  if (!f.name.trim()) errs.name = 'required'
  if (!f.timezone.trim()) errs.schedule_timezone = 'required'
  if (f.schedule.mode === 'cron' && !f.schedule.cron.trim()) errs.schedule = 'required'
  if (f.verifyPreset === 'custom' && !f.verifyCron.trim()) errs['verification.schedule'] = 'required'
  if (f.type === 'filesystem' && cleanList(f.fsPaths).length === 0) errs['spec.source.paths'] = 'required'
  if (f.type === 'sqlite' && !f.sqlitePath.trim()) errs['spec.source.path'] = 'required'
  if (f.type === 'vaultwarden' && !f.vaultwardenDataDir.trim()) errs['spec.source.data_dir'] = 'required'
  targetKind(f.targetType).validate(f, errs)
  if (!(f.partSizeMiB >= 1)) errs['spec.target.part_size_bytes'] = 'min_part_size'
  if (f.encryptionEnabled && !f.encryptionKeyName.trim()) errs['spec.pipeline.encryption.key_name'] = 'required'
  if (UNSUPPORTED.format.includes(f.format)) errs['spec.pipeline.format'] = 'unsupported'
  // engine/jobspec: a plain file tree is neither encrypted nor made of a Vaultwarden recipe.
  if (f.format === 'raw_tree_v1' && f.type === 'vaultwarden') errs['spec.pipeline.format'] = 'raw_tree_vaultwarden'
  if (f.format === 'raw_tree_v1' && f.encryptionEnabled) errs['spec.pipeline.encryption'] = 'raw_tree_encryption'
  if (f.type === 'filesystem' && UNSUPPORTED.symlinkPolicy.includes(f.fsSymlinkPolicy)) errs['spec.source.symlink_policy'] = 'unsupported'
  if (f.type === 'filesystem' && UNSUPPORTED.snapshotMode.includes(f.fsSnapshotMode)) errs['spec.source.snapshot_mode'] = 'unsupported'
  const r = f.retention
  const anyRule = [r.keepLast, r.keepDays, ...GFS_RULES.map(([fk]) => r[fk])].some((v) => (v ?? 0) > 0)
  if (r.enabled && !anyRule) errs['spec.retention'] = 'retention_rule_required'
  if ((r.keepLast ?? 0) > 10000) errs['spec.retention.keep_last'] = 'max_10000'
  for (const [fk, sk] of GFS_RULES) if ((r[fk] ?? 0) > 10000) errs[`spec.retention.${sk}`] = 'max_10000'
  if ((r.keepDays ?? 0) > 3650) errs['spec.retention.keep_days'] = 'max_3650'
  if (!(r.maxDeletePerTick >= 1 && r.maxDeletePerTick <= 10000)) errs['spec.retention.max_delete_per_tick'] = 'range_tick'
  if (!(r.maxDeletePerDay >= 1 && r.maxDeletePerDay <= 100000)) errs['spec.retention.max_delete_per_day'] = 'range_day'
  const h = f.hooks ?? defaultHooks()
  for (const [on, name, argv, timeout] of [
    [h.beforeEnabled, 'before', h.beforeCommand, h.beforeTimeout],
    [h.afterEnabled, 'after', h.afterCommand, h.afterTimeout],
  ] as const) {
    if (!on) continue
    if (argv.length === 0 || !argv[0].trim()) errs[`spec.hooks.${name}.command`] = 'hook_program_required'
    if (!(timeout >= 1 && timeout <= 86400)) errs[`spec.hooks.${name}.timeout_seconds`] = 'range_hook_timeout'
  }
  return errs
}

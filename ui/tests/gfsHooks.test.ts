import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { i18n } from '@/i18n'
import RetentionPreview from '@/components/RetentionPreview.vue'
import { formToSpec, newJobForm, retentionFromSpec, retentionToSpec, specToForm, validateForm } from '@/lib/jobForm'
import type { JobSpec, RetentionPreview as Preview } from '@/api/types'
import { mockFetch } from './fetchMock'

const base: JobSpec = {
  v: 1,
  type: 'sqlite',
  pipeline: { format: 'archive_v1', encryption: { type: 'none' } },
  notifications: { mode: 'inherit', wecom_bot: [], email: [] },
  retention: { enabled: true, keep_last: 3, keep_days: null, max_delete_per_tick: 50, max_delete_per_day: 200 },
  source: { path: '/db.sqlite', integrity_check: false },
  target: { type: 'local_dir', base_dir: '/bk', part_size_bytes: 268435456 },
}

describe('GFS retention in the form', () => {
  it('round-trips the five rules and leaves a policy without them exactly as it was', () => {
    const gfs = { ...base.retention, keep_daily: 7, keep_weekly: 4, keep_monthly: 12, keep_yearly: 2, keep_hourly: 24 }
    expect(retentionToSpec(retentionFromSpec(gfs))).toEqual(gfs)
    expect(retentionToSpec(retentionFromSpec(base.retention))).toEqual(base.retention)
    expect(formToSpec(specToForm(base))).toEqual(base)
  })

  it('accepts a GFS rule alone as the rule an enabled policy needs', () => {
    const f = { ...newJobForm(), name: 'x', fsPaths: ['/a'], localBaseDir: '/b' }
    f.retention.enabled = true
    expect(validateForm(f)).toEqual({ 'spec.retention': 'retention_rule_required' })
    f.retention.keepWeekly = 4
    expect(validateForm(f)).toEqual({})
    f.retention.keepYearly = 10001
    expect(validateForm(f)).toEqual({ 'spec.retention.keep_yearly': 'max_10000' })
  })
})

describe('hooks in the form', () => {
  it('maps hooks to and from the spec, and sends none when both are off', () => {
    const spec: JobSpec = {
      ...base,
      hooks: {
        before: { command: ['pg_dump', '-f', '/srv/db.sql'], timeout_seconds: 600, on_failure: 'continue' },
        after: { command: ['curl', '-fsS', 'https://hc.example/ping'], timeout_seconds: 30, when: 'success' },
      },
    }
    const f = specToForm(spec)
    expect(f.hooks).toMatchObject({ beforeEnabled: true, beforeOnFailure: 'continue', afterWhen: 'success', afterTimeout: 30 })
    expect(formToSpec(f)).toEqual(spec)
    f.hooks.beforeEnabled = false
    f.hooks.afterEnabled = false
    expect('hooks' in formToSpec(f)).toBe(false)
  })

  it('needs a program and a timeout in range, on the fields the API names', () => {
    const f = { ...newJobForm(), name: 'x', fsPaths: ['/a'], localBaseDir: '/b' }
    f.hooks.beforeEnabled = true
    f.hooks.beforeTimeout = 0
    f.hooks.afterEnabled = true
    f.hooks.afterCommand = [' ', 'x']
    expect(validateForm(f)).toEqual({
      'spec.hooks.before.command': 'hook_program_required',
      'spec.hooks.before.timeout_seconds': 'range_hook_timeout',
      'spec.hooks.after.command': 'hook_program_required',
    })
  })
})

describe('retention preview', () => {
  beforeEach(() => {
    i18n.global.locale.value = 'en'
  })
  afterEach(() => vi.unstubAllGlobals())

  const preview: Preview = {
    retention: base.retention,
    keep_total: 2,
    delete_total: 1,
    keep: [
      { run_id: 'aaaaaaaa-1', ended_at: 1, pinned: true, reasons: ['pinned'], details: [{ rule: 'pinned', kept: true, text: 'pinned' }] },
      {
        run_id: 'bbbbbbbb-2', ended_at: 2, pinned: false, reasons: ['keep_last', 'keep_daily'],
        details: [
          { rule: 'keep_last', kept: true, rank: 1, limit: 3, text: 'keep_last 1' },
          { rule: 'keep_daily', kept: true, period: '2026-12-05', rank: 1, limit: 7, text: 'daily 2026-12-05' },
        ],
      },
    ],
    delete: [
      {
        run_id: 'cccccccc-3', ended_at: 0, pinned: false, reasons: ['delete'],
        details: [
          { rule: 'keep_last', kept: false, limit: 3, text: 'not among the newest 3' },
          { rule: 'keep_daily', kept: false, period: '2026-12-05', superseded_by: 'bbbbbbbb-2', text: 'daily 2026-12-05 keeps the newer bbbbbbbb-2' },
        ],
      },
    ],
  }

  async function show(locale: 'en' | 'zh-CN') {
    i18n.global.locale.value = locale
    mockFetch({ 'POST /api/jobs/j1/retention/preview': { body: preview } })
    const w = mount(RetentionPreview, { props: { jobId: 'j1', retention: base.retention }, global: { plugins: [i18n] } })
    await w.get('[data-testid="retention-preview-run"]').trigger('click')
    await flushPromises()
    const why = (list: string) => w.get(`[data-testid="retention-preview-${list}"]`).findAll('[data-testid="retention-why"]').map((c) => c.text())
    return { keep: why('keep'), del: why('delete') }
  }

  it('says per snapshot why it is kept or why it would go', async () => {
    const { keep, del } = await show('en')
    expect(keep).toEqual(['pinned', 'keep_last 1; daily 2026-12-05'])
    expect(del).toEqual(['not among the newest 3; daily 2026-12-05 keeps the newer bbbbbbbb'])
  })

  it('says it in Chinese too', async () => {
    const { keep, del } = await show('zh-CN')
    expect(keep).toEqual(['已固定', '最近第 1 个; 每天 2026-12-05'])
    expect(del[0]).toContain('每天 2026-12-05 已保留更新的')
  })
})

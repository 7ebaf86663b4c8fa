import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { bucketByDay, dayKey, useDashboardStore } from '@/stores/dashboard'
import type { RunListItem, Snapshot } from '@/api/types'
import { mockFetch } from './fetchMock'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

// 2026-03-10T12:00:00Z
const NOW = Date.UTC(2026, 2, 10, 12) / 1000
const run = (id: string, status: RunListItem['status'], ended: number): RunListItem => ({ id, status, started_at: ended - 60, ended_at: ended, error: status === 'failed' ? 'run_failed' : null })
const snap = (id: string, ended: number, bytes: number, status: Snapshot['status'] = 'present'): Snapshot => ({
  run_id: id, job_id: 'j1', node_id: 'hub', target_type: 'local_dir', artifact_format: 'archive_v1', status, started_at: ended - 60, ended_at: ended, transfer_bytes: bytes,
})

describe('dashboard aggregation', () => {
  it('buckets by calendar day in the Hub time zone', () => {
    expect(dayKey(NOW, 'UTC')).toBe('2026-03-10')
    // 23:30 UTC on the 9th is already the 10th in Shanghai (UTC+8)
    const late = Date.UTC(2026, 2, 9, 23, 30) / 1000
    expect(dayKey(late, 'UTC')).toBe('2026-03-09')
    expect(dayKey(late, 'Asia/Shanghai')).toBe('2026-03-10')
  })

  it('counts successes, failures and bytes per day over the window', () => {
    const runs = [run('a', 'success', NOW - 100), run('b', 'failed', NOW - 200), run('c', 'success', NOW - 86400), run('d', 'canceled', NOW), run('old', 'success', NOW - 30 * 86400)]
    const snaps = [snap('a', NOW - 100, 1000), snap('c', NOW - 86400, 24)]
    const b = bucketByDay(runs, snaps, 3, NOW, 'UTC')
    expect(b.map((x) => x.day)).toEqual(['2026-03-08', '2026-03-09', '2026-03-10'])
    expect(b[2]).toEqual({ day: '2026-03-10', success: 1, failed: 1, bytes: 1000 })
    expect(b[1]).toEqual({ day: '2026-03-09', success: 1, failed: 0, bytes: 24 })
    expect(b[0]).toEqual({ day: '2026-03-08', success: 0, failed: 0, bytes: 0 })
  })
})

describe('dashboard store', () => {
  it('loads jobs, runs, snapshots, agents and failed notifications into one view', async () => {
    mockFetch({
      'GET /api/jobs': { body: { items: [{ id: 'j1', name: 'web' }], page: 1, page_size: 20, total: 1 } },
      'GET /api/jobs/j1/runs': { body: [run('r2', 'failed', NOW - 10), run('r1', 'success', NOW - 1000)] },
      'GET /api/jobs/j1/snapshots': { body: { items: [snap('r1', NOW - 1000, 5), snap('r0', NOW - 5000, 1, 'error')] } },
      'GET /api/agents': { body: { items: [{ id: 'a', online: true, revoked: false }, { id: 'b', online: false, revoked: false }, { id: 'c', online: false, revoked: true }], page: 1, page_size: 20, total: 3 } },
      'GET /api/notifications/queue': { body: { items: [{ id: 'n1', status: 'failed', destination: 'ops', job_name: 'web' }], total: 1 } },
    })
    const d = useDashboardStore()
    await d.load('UTC', NOW)
    expect(d.recent.data.map((r) => r.id)).toEqual(['r2', 'r1'])
    expect(d.recent.data[0]!.job_name).toBe('web')
    expect(d.attention.data.failedRuns.map((r) => r.id)).toEqual(['r2'])
    expect(d.attention.data.errorSnapshots.map((s) => s.run_id)).toEqual(['r0'])
    expect(d.attention.data.failedNotifications.map((n) => n.id)).toEqual(['n1'])
    expect(d.agents.data).toEqual({ online: 1, offline: 1, revoked: 1, total: 3 })
    const today = d.chart.data.at(-1)!
    // bytes count every snapshot written that day, including one that is in error now
    expect(today).toMatchObject({ success: 1, failed: 1, bytes: 6 })
    expect(d.chart.error).toBeNull()
  })

  it('keeps working when agents and notifications are not available', async () => {
    mockFetch({
      'GET /api/jobs': { body: { items: [], page: 1, page_size: 20, total: 0 } },
    })
    const d = useDashboardStore()
    await d.load('UTC', NOW)
    expect(d.chart.error).toBeNull()
    expect(d.agents.error).toBeTruthy()
    expect(d.notificationsError).toBeTruthy()
    expect(d.chart.data).toHaveLength(14)
  })

  it('reports a failing job list on every section that depends on it', async () => {
    mockFetch({ 'GET /api/jobs': { status: 500, body: { error: 'internal_error', message: 'db down', request_id: 'q' } } })
    const d = useDashboardStore()
    await d.load('UTC', NOW)
    expect(d.chart.error).toBeTruthy()
    expect(d.recent.error).toBeTruthy()
    expect(d.chart.loading).toBe(false)
  })
})

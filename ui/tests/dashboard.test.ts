import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { useDashboardStore } from '@/stores/dashboard'
import type { DashboardOverview } from '@/api/types'
import { ApiError } from '@/api/client'
import { mockFetch } from './fetchMock'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

const NOW = Date.UTC(2026, 2, 10, 12) / 1000
const overview = (over: Partial<DashboardOverview> = {}): DashboardOverview => ({
  timezone: 'UTC',
  generated_at: NOW,
  days: [
    { day: '2026-03-09', start: NOW - 86400 - 43200, success: 70, failed: 1, bytes: 700 },
    { day: '2026-03-10', start: NOW - 43200, success: 2, failed: 1, bytes: 7 },
  ],
  jobs_total: 2,
  recent_runs: [{ id: 'r2', job_id: 'j1', job_name: 'web', status: 'failed', started_at: NOW - 10, ended_at: NOW - 5, error: 'run_failed' }],
  agents: { online: 1, offline: 2, revoked: 1, total: 4 },
  attention: {
    failed_runs: [{ id: 'r2', job_id: 'j1', job_name: 'web', status: 'failed', started_at: NOW - 10, ended_at: NOW - 5, error: 'run_failed' }],
    failed_runs_total: 2,
    failed_notifications: [{ id: 'n1', run_id: 'r2', job_id: 'j1', job_name: 'web', channel: 'webhook', destination: 'ops', attempts: 3, updated_at: NOW, last_error: 'http 500' }],
    failed_notifications_total: 12,
    error_snapshots: [],
    error_snapshots_total: 0,
  },
  ...over,
})

describe('dashboard store', () => {
  it('loads the whole dashboard with one request to the Hub’s overview', async () => {
    const calls = mockFetch({ 'GET /api/dashboard/overview': { body: overview() } })
    const d = useDashboardStore()
    await d.load()
    expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual(['GET /api/dashboard/overview?days=14'])
    expect(d.chart.map((b) => b.day)).toEqual(['2026-03-09', '2026-03-10'])
    expect(d.totals).toEqual({ success: 72, failed: 2, bytes: 707 })
    // counts the totals, not just the items the overview carries
    expect(d.attentionTotal).toBe(14)
    expect(d.error).toBeNull()
    expect(d.loading).toBe(false)
  })

  it('asks for the number of days it shows', async () => {
    const calls = mockFetch({ 'GET /api/dashboard/overview': { body: overview() } })
    const d = useDashboardStore()
    d.days = 30
    await d.load()
    expect(calls[0]!.url).toBe('/api/dashboard/overview?days=30')
  })

  it('reports a failure with its request ID and keeps the last good numbers', async () => {
    let fail = false
    mockFetch({
      'GET /api/dashboard/overview': () =>
        fail ? { status: 500, body: { error: 'internal_error', message: 'db down', request_id: 'rq-dash' } } : { body: overview() },
    })
    const d = useDashboardStore()
    await d.load()
    fail = true
    await d.load()
    expect(d.error).toBeInstanceOf(ApiError)
    expect((d.error as ApiError).requestId).toBe('rq-dash')
    expect(d.totals.success).toBe(72)
    expect(d.loading).toBe(false)
  })
})

// The agent page (/agents/:id) against canned GET /api/fleet/{id} answers: what it shows, which
// actions each role sees, its empty states' next step and its not-found state.
import { describe, expect, it } from 'vitest'
import { flushPromises, type VueWrapper } from '@vue/test-utils'
import type { Component } from 'vue'
import { mockFetch } from './fetchMock'
import { asSignedInAdmin, mountView, signInAs } from './mountView'
import AgentDetailView from '@/views/AgentDetailView.vue'
import AgentsView from '@/views/AgentsView.vue'
import type { FleetAgentDetail, Role } from '@/api'

const NOW = Math.floor(Date.now() / 1000)

function detail(over: Partial<FleetAgentDetail> = {}): FleetAgentDetail {
  return {
    agent: {
      id: 'a1', name: 'nas', status: 'online', created_at: NOW - 86400, last_seen_at: NOW - 5, labels: ['home'],
      version: '1.2.3', os: 'linux', arch: 'amd64', backup_kinds: ['filesystem'], control_kinds: ['cancel'],
      connected: true, revoked_at: null, assigned_jobs_total: 1, pending_tasks_total: 0,
    },
    sync: { desired_snapshot_id: 's1', desired_snapshot_at: NOW - 60, applied_snapshot_id: 's1', applied_snapshot_at: NOW - 59, state: 'synced', last_error_kind: null, last_error: null, last_attempt_at: NOW - 60 },
    recent_activity: [{ run_id: 'r1', job_id: 'j1', job_name: 'photos', status: 'success', started_at: NOW - 600, ended_at: NOW - 500 }],
    related_jobs: [{ id: 'j1', name: 'photos', schedule: '0 3 * * *', updated_at: NOW - 1000 }],
    capabilities: { can_rotate_key: true, can_revoke: true, can_sync_now: true, can_manage_storage: true },
    ...over,
  }
}

asSignedInAdmin()

const render = (view: Component = AgentDetailView, props: Record<string, unknown> = { id: 'a1' }) => mountView(view, props)

const ACTIONS = ['agent-sync', 'agent-credentials', 'agent-rotate', 'agent-revoke']
const visible = (w: VueWrapper) => ACTIONS.filter((id) => w.find(`[data-testid="${id}"]`).exists())

describe('agent page', () => {
  it('shows the agent, its config sync, jobs and recent runs', async () => {
    mockFetch({ 'GET /api/fleet/a1': { body: detail() } })
    const { w } = await render()
    expect(w.get('[data-testid="agent-title"]').text()).toBe('nas')
    expect(w.get('[data-testid="agent-status"]').attributes('data-status')).toBe('online')
    expect(w.get('[data-testid="agent-version"]').text()).toBe('1.2.3')
    expect(w.get('[data-testid="agent-sync-state"]').attributes('data-status')).toBe('synced')
    expect(w.get('[data-testid="agent-jobs"]').text()).toContain('photos')
    expect(w.get('[data-testid="agent-runs"] a').attributes('href')).toBe('/runs/r1')
    expect(w.find('[data-testid="agent-sync-error"]').exists()).toBe(false)
    w.unmount()
  })

  it('shows each role only the actions it may take, and none a revoked agent no longer allows', async () => {
    for (const [role, want] of [
      ['viewer', []],
      ['operator', ['agent-sync']],
      ['admin', ACTIONS],
    ] as [Role, string[]][]) {
      signInAs(role)
      mockFetch({ 'GET /api/fleet/a1': { body: detail() } })
      const { w } = await render()
      expect(visible(w), role).toEqual(want)
      w.unmount()
    }
    mockFetch({
      'GET /api/fleet/a1': {
        body: detail({ capabilities: { can_rotate_key: false, can_revoke: false, can_sync_now: false, can_manage_storage: true },
          agent: { ...detail().agent, status: 'revoked', revoked_at: NOW } }),
      },
    })
    const { w } = await render()
    expect(visible(w)).toEqual([])
    w.unmount()
  })

  it('Sync now posts to the agent and says what the Hub did', async () => {
    const calls = mockFetch({
      'GET /api/fleet/a1': { body: detail() },
      'POST /api/agents/a1/sync-config-now': { body: { outcome: 'pending_offline' } },
    })
    const { w } = await render()
    await w.get('[data-testid="agent-sync"]').trigger('click')
    await flushPromises()
    expect(calls.some((c) => c.method === 'POST' && c.url.endsWith('/api/agents/a1/sync-config-now'))).toBe(true)
    expect(document.body.textContent).toContain('gets the configuration when it reconnects')
    w.unmount()
  })

  it('offers the next step when the agent has no jobs or runs, and shows a sync error', async () => {
    mockFetch({
      'GET /api/fleet/a1': {
        body: detail({ related_jobs: [], recent_activity: [],
          sync: { ...detail().sync, state: 'error', last_error_kind: 'apply_failed', last_error: 'disk full' } }),
      },
    })
    const { w, router } = await render()
    const jobsEmpty = w.get('[data-testid="agent-jobs-empty"]')
    expect(jobsEmpty.text()).toContain('No jobs run on this agent yet.')
    await jobsEmpty.get('button').trigger('click')
    await flushPromises()
    expect(router.currentRoute.value.path).toBe('/jobs/new')
    expect(w.get('[data-testid="agent-runs-empty"]').text()).toContain('No runs on this agent yet.')
    expect(w.get('[data-testid="agent-sync-error"]').text()).toBe('apply_failed: disk full')
    w.unmount()
  })

  it('says the agent does not exist and leads back to the list', async () => {
    mockFetch({ 'GET /api/fleet/gone': { status: 404, body: { error: 'agent_not_found', message: 'no such agent' } } })
    const { w, router } = await render(AgentDetailView, { id: 'gone' })
    const nf = w.get('[data-testid="agent-not-found"]')
    expect(nf.text()).toContain('Agent not found')
    await nf.get('button').trigger('click')
    await flushPromises()
    expect(router.currentRoute.value.path).toBe('/agents')
    w.unmount()
  })

  it('is linked from the agents list', async () => {
    mockFetch({
      'GET /api/agents': { body: { items: [{ id: 'a1', name: 'nas', revoked: false, online: true, last_seen_at: NOW, labels: [], config_sync_status: 'synced' }], page: 1, page_size: 20, total: 1 } },
    })
    const { w } = await render(AgentsView, {})
    expect(w.get('[data-testid="agent-link"]').attributes('href')).toBe('/agents/a1')
    w.unmount()
  })
})

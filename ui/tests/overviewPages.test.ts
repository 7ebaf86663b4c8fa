// The command center lists what needs attention with links, and says all is well (with a next
// step) when nothing does; the integrations page shows credentials per node, flags one a job needs
// but its node lacks, and lists where notifications go. Both read in English and Chinese.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import type { Component } from 'vue'
import { i18n } from '@/i18n'
import { mockFetch } from './fetchMock'
import { mountView } from './mountView'
import CommandCenterView from '@/views/CommandCenterView.vue'
import IntegrationsView from '@/views/IntegrationsView.vue'
import type { CommandCenter, IntegrationsDistribution, IntegrationsStorage, IntegrationsSummary } from '@/api/types'

const NOW = 1_773_144_000

beforeEach(() => {
  setActivePinia(createPinia())
  i18n.global.locale.value = 'en'
})
afterEach(() => {
  i18n.global.locale.value = 'en'
  vi.unstubAllGlobals()
})

async function render(view: Component) {
  return (await mountView(view)).w
}

const cc = (items: CommandCenter['items']): CommandCenter => ({
  generated_at: NOW, window_days: 7, since: NOW - 7 * 86400,
  counts: { total: items.length, critical: items.filter((i) => i.severity === 'critical').length, warning: items.filter((i) => i.severity === 'warning').length, info: 0, by_kind: {} },
  items,
})

describe('command center page', () => {
  it('lists each item with its wording and link, most severe first', async () => {
    const calls = mockFetch({
      'GET /api/command-center': {
        body: cc([
          { id: 'failed_run:j1', kind: 'failed_run', severity: 'critical', title: 'x', detail: 'disk full', at: NOW - 60, link: '/runs/r9', job_id: 'j1', job_name: 'nightly', run_id: 'r9' },
          { id: 'stale_agent:a1', kind: 'stale_agent', severity: 'warning', title: 'x', detail: null, at: NOW - 3600, link: '/agents', agent_id: 'a1', agent_name: 'web-2' },
          { id: 'notification_failed:n1', kind: 'notification_failed', severity: 'warning', title: 'x', detail: null, at: NOW, link: '/notifications', job_name: 'nightly', channel: 'email', destination: 'ops' },
          { id: 'future', kind: 'something_new', severity: 'warning', title: 'A thing the Hub knows', detail: null, at: NOW, link: '/' },
        ]),
      },
    })
    const w = await render(CommandCenterView)
    expect(calls[0]!.url).toBe('/api/command-center?days=7')
    const items = w.findAll('[data-testid="attention-item"]')
    expect(items).toHaveLength(4)
    expect(items[0]!.text()).toContain('The latest run of nightly failed')
    expect(items[0]!.text()).toContain('disk full')
    expect(items[0]!.find('a').attributes('href')).toBe('/runs/r9')
    expect(items[1]!.text()).toContain('Agent web-2 is offline')
    expect(items[2]!.text()).toContain('A email notification to ops about nightly failed')
    // An unknown kind falls back to the Hub's own title.
    expect(items[3]!.text()).toContain('A thing the Hub knows')
    expect(w.find('[data-testid="list-empty"]').exists()).toBe(false)
    w.unmount()
  })

  it('says all is well with a next action when nothing needs attention, in Chinese too', async () => {
    mockFetch({ 'GET /api/command-center': { body: cc([]) } })
    let w = await render(CommandCenterView)
    expect(w.find('[data-testid="list-empty"]').text()).toContain('All is well')
    expect(w.find('[data-testid="command-center-next"]').attributes('href')).toBe('/jobs')
    w.unmount()
    i18n.global.locale.value = 'zh-CN'
    w = await render(CommandCenterView)
    expect(w.find('[data-testid="list-empty"]').text()).toContain('一切正常')
    expect(w.find('h1').text()).toBe('指挥中心')
    w.unmount()
  })

  it('shows the Hub’s error with a retry', async () => {
    mockFetch({ 'GET /api/command-center': { status: 500, body: { error: 'internal_error', message: 'db down', request_id: 'rq-cc' } } })
    const w = await render(CommandCenterView)
    expect(w.text()).toContain('rq-cc')
    w.unmount()
  })
})

const storage: IntegrationsStorage = {
  secret_kinds: ['s3', 'webdav'],
  nodes: [
    { node_id: 'hub', name: 'Hub', is_hub: true, online: true, missing: [],
      credentials: [{ kind: 'webdav', name: 'nas', updated_at: NOW, jobs: [{ id: 'j1', name: 'nightly' }] }] },
    { node_id: 'a1', name: 'web-1', is_hub: false, online: true, credentials: [],
      missing: [{ kind: 'webdav', name: 'offsite', jobs: [{ id: 'j2', name: 'agent job' }] }] },
  ],
}
const dist: IntegrationsDistribution = {
  secret_kinds: ['s3', 'webdav'],
  credentials: [
    { kind: 'webdav', name: 'nas', on_hub: true, agents: [], missing_agents: [] },
    { kind: 'webdav', name: 'offsite', on_hub: false, agents: [], missing_agents: ['a1'] },
  ],
  agents: [{ agent_id: 'a1', name: 'web-1', online: true, credentials: [] }],
  notifications: [
    { channel: 'email', secret_kind: 'smtp', destinations: [{ name: 'ops', enabled: true, updated_at: NOW }] },
    { channel: 'webhook', secret_kind: 'webhook', destinations: [] },
  ],
}
const summary: IntegrationsSummary = {
  storage: { secret_kinds: ['s3', 'webdav'], nodes: 2, credentials: 1, jobs_using_credentials: 2, missing: 1 },
  distribution: { agents: 1, agents_with_credentials: 0 },
  notifications: { channels: 2, destinations: 1, enabled_destinations: 1, unconfigured_channels: ['webhook'] },
}

describe('integrations page', () => {
  it('shows credentials per node, the missing one, the distribution and the channels', async () => {
    mockFetch({
      'GET /api/integrations': { body: summary },
      'GET /api/integrations/storage': { body: storage },
      'GET /api/integrations/distribution': { body: dist },
    })
    const w = await render(IntegrationsView)
    const nodes = w.findAll('[data-testid="integrations-node"]')
    expect(nodes).toHaveLength(2)
    expect(nodes[0]!.text()).toContain('webdav/nas')
    expect(nodes[0]!.text()).toContain('nightly')
    const missing = nodes[1]!.find('[data-testid="integrations-missing"]')
    expect(missing.text()).toContain('Missing')
    expect(missing.text()).toContain('webdav/offsite')
    expect(missing.find('a').attributes('href')).toBe('/jobs/j2')
    expect(w.find('[data-testid="integrations-missing-count"]').text()).toBe('1')
    const rows = w.findAll('[data-testid="distribution-row"]')
    expect(rows[1]!.text()).toContain('web-1')
    const channels = w.findAll('[data-testid="integrations-channel"]')
    expect(channels[0]!.text()).toContain('ops')
    expect(channels[1]!.text()).toContain('No destination configured')
    expect(w.text()).toContain('s3, webdav')
    w.unmount()
  })

  it('reads in Chinese', async () => {
    mockFetch({
      'GET /api/integrations': { body: summary },
      'GET /api/integrations/storage': { body: storage },
      'GET /api/integrations/distribution': { body: dist },
    })
    i18n.global.locale.value = 'zh-CN'
    const w = await render(IntegrationsView)
    expect(w.find('h1').text()).toBe('集成')
    expect(w.text()).toContain('缺失')
    w.unmount()
  })
})

// Bulk operations in the UI: the list and its empty state, one operation followed live until it is
// finished, Retry failed and Cancel only for those allowed and only when they have something to
// do, and creating one only after its preview (a job deploy from the job page, labels from the
// agents page).
import { describe, expect, it, vi } from 'vitest'
import { flushPromises } from '@vue/test-utils'
import type { Router } from 'vue-router'
import type { Component } from 'vue'
import { NSelect } from 'naive-ui'
import en from '@/i18n/en'
import { mockFetch } from './fetchMock'
import { asSignedInAdmin, mountView, signInAs } from './mountView'
import BulkOperationsView from '@/views/BulkOperationsView.vue'
import BulkOperationView from '@/views/BulkOperationView.vue'
import BulkCreateModal from '@/components/BulkCreateModal.vue'
import AgentsView from '@/views/AgentsView.vue'
import JobDetailView from '@/views/JobDetailView.vue'
import IntegrationsView from '@/views/IntegrationsView.vue'

const NOW = 1_767_225_600

asSignedInAdmin()

let router: Router
async function render(view: Component, props: Record<string, unknown> = {}) {
  const m = await mountView(view, props)
  router = m.router
  return m.w
}

const counts = (over: Record<string, number> = {}) => ({ total: 3, queued: 0, running: 0, success: 3, failed: 0, canceled: 0, ...over })
const listItem = (id: string, over: Record<string, unknown> = {}) => ({
  id, kind: 'agent_labels_add', status: 'done', created_at: NOW, updated_at: NOW, started_at: NOW, ended_at: NOW, canceled_at: null, ...counts(), ...over,
})
const item = (agent: string, status: string, over: Record<string, unknown> = {}) => ({
  op_id: 'op1', agent_id: agent, agent_name: `name-${agent}`, status, attempts: 1, created_at: NOW, updated_at: NOW,
  started_at: NOW, ended_at: status === 'queued' || status === 'running' ? null : NOW, last_error_kind: null, last_error: null, ...over,
})
const detail = (over: Record<string, unknown> = {}) => ({
  ...listItem('op1'), created_by_user_id: 1, selector: { labels: ['prod'], labels_mode: 'and' }, payload: { labels: ['eu-1'] },
  items: [item('a', 'success'), item('b', 'success'), item('c', 'success')], ...over,
})
// Document-wide: naive-ui teleports a modal's content to the body.
const byTestId = (id: string) => [...document.querySelectorAll(`[data-testid="${id}"]`)] as HTMLElement[]
const buttonIn = (id: string) => (byTestId(id)[0]?.closest('button') ?? byTestId(id)[0]) as HTMLElement | undefined

describe('bulk operations list', () => {
  it('lists operations with their kind, status and items counted by status', async () => {
    mockFetch({
      'GET /api/bulk-operations': {
        body: [
          listItem('op2', { kind: 'job_deploy', status: 'done', ...counts({ success: 2, failed: 1 }) }),
          listItem('op1', { kind: 'sync_config_now', status: 'canceled', ...counts({ success: 1, canceled: 2 }) }),
        ],
      },
    })
    const w = await render(BulkOperationsView)
    const rows = w.findAll('[data-testid="bulk-row"]')
    expect(rows).toHaveLength(2)
    expect(rows[0].get('[data-testid="bulk-link"]').text()).toBe(en.bulk.kind.job_deploy)
    expect(rows[0].get('[data-testid="bulk-link"]').attributes('href')).toBe('/bulk-operations/op2')
    expect(rows[0].get('[data-testid="bulk-status"]').text()).toBe(en.bulk.status.done)
    expect(rows[0].get('[data-testid="bulk-counts-done"]').text()).toBe('3 of 3 finished')
    expect(rows[0].get('[data-testid="bulk-count-failed"]').text()).toBe('1 failed')
    expect(rows[0].find('[data-testid="bulk-count-queued"]').exists()).toBe(false)
    expect(rows[1].get('[data-testid="bulk-status"]').text()).toBe(en.bulk.status.canceled)
    expect(rows[1].get('[data-testid="bulk-count-canceled"]').text()).toBe('2 canceled')
    w.unmount()
  })

  it('says there is none yet and offers the next step: the agents page, or a new operation', async () => {
    mockFetch({ 'GET /api/bulk-operations': { body: [] } })
    const w = await render(BulkOperationsView)
    expect(w.get('[data-testid="list-empty"]').text()).toContain(en.bulk.empty)
    expect(w.get('[data-testid="bulk-empty-agents"]').attributes('href')).toBe('/agents')
    expect(w.find('[data-testid="bulk-empty-new"]').exists()).toBe(true)
    w.unmount()
  })

  it('offers a viewer no new operation', async () => {
    signInAs('viewer')
    mockFetch({ 'GET /api/bulk-operations': { body: [] } })
    const w = await render(BulkOperationsView)
    expect(w.find('[data-testid="bulk-new"]').exists()).toBe(false)
    expect(w.find('[data-testid="bulk-empty-new"]').exists()).toBe(false)
    expect(w.find('[data-testid="bulk-empty-agents"]').exists()).toBe(true)
    w.unmount()
  })

  it('follows the list while an operation runs and stops once all are finished', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const answers = [[listItem('op1', { status: 'running', ...counts({ running: 1, success: 2 }) })], [listItem('op1')]]
    const calls = mockFetch({ 'GET /api/bulk-operations': () => ({ body: answers.length > 1 ? answers.shift() : answers[0] }) })
    const w = await render(BulkOperationsView)
    expect(w.get('[data-testid="bulk-row"]').attributes('data-status')).toBe('running')
    await vi.advanceTimersByTimeAsync(3000)
    await flushPromises()
    expect(w.get('[data-testid="bulk-row"]').attributes('data-status')).toBe('done')
    await vi.advanceTimersByTimeAsync(60_000)
    expect(calls.filter((c) => c.url === '/api/bulk-operations')).toHaveLength(2)
    w.unmount()
  })
})

describe('one bulk operation', () => {
  it('shows each agent’s item with status, attempts and last error', async () => {
    mockFetch({
      'GET /api/bulk-operations/op1': {
        body: detail({
          ...counts({ success: 2, failed: 1 }),
          items: [item('a', 'success'), item('b', 'failed', { attempts: 2, last_error_kind: 'agent_revoked', last_error: 'the agent is revoked' }), item('c', 'success')],
        }),
      },
    })
    const w = await render(BulkOperationView, { id: 'op1' })
    expect(w.get('[data-testid="bulk-title"]').text()).toBe(en.bulk.kind.agent_labels_add)
    expect(w.get('[data-testid="bulk-selector"]').text()).toBe('agents with all of: prod')
    expect(w.get('[data-testid="bulk-payload"]').text()).toBe('eu-1')
    const rows = w.findAll('[data-testid="bulk-item"]')
    expect(rows.map((r) => r.attributes('data-status'))).toEqual(['success', 'failed', 'success'])
    expect(rows[1].get('[data-testid="bulk-item-attempts"]').text()).toBe('2')
    expect(rows[1].get('[data-testid="bulk-item-error"]').text()).toContain('agent_revoked')
    expect(rows[1].get('[data-testid="bulk-item-error"]').text()).toContain('the agent is revoked')
    expect(rows[0].text()).toContain('name-a')
    w.unmount()
  })

  it('names a deploy’s source job and links to it', async () => {
    mockFetch({
      'GET /api/bulk-operations/op1': { body: detail({ kind: 'job_deploy', payload: { source_job_id: 'j1', name_template: '{name} ({node})' } }) },
      'GET /api/jobs/j1': { body: { id: 'j1', name: 'Docs' } },
    })
    const w = await render(BulkOperationView, { id: 'op1' })
    expect(w.get('[data-testid="bulk-payload"]').text()).toBe('Docs')
    expect(w.get('[data-testid="bulk-payload"]').attributes('href')).toBe('/jobs/j1')
    expect(w.find('[data-testid="bulk-jobs-link"]').exists()).toBe(true)
    w.unmount()
  })

  it('offers Retry failed only when items failed, and retries through the Hub', async () => {
    const calls = mockFetch({ 'GET /api/bulk-operations/op1': { body: detail() } })
    let w = await render(BulkOperationView, { id: 'op1' })
    expect(w.find('[data-testid="bulk-retry"]').exists()).toBe(false)
    w.unmount()

    let failed = true
    const calls2 = mockFetch({
      'GET /api/bulk-operations/op1': () => ({
        body: failed
          ? detail({ ...counts({ success: 2, failed: 1 }), items: [item('a', 'success'), item('b', 'failed'), item('c', 'success')] })
          : detail({ status: 'queued', ...counts({ success: 2, queued: 1 }), items: [item('a', 'success'), item('b', 'queued'), item('c', 'success')] }),
      }),
      'POST /api/bulk-operations/op1/retry-failed': () => {
        failed = false
        return { status: 204 }
      },
    })
    w = await render(BulkOperationView, { id: 'op1' })
    expect(w.get('[data-testid="bulk-retry"]').text()).toBe('Retry failed (1)')
    await w.get('[data-testid="bulk-retry"]').trigger('click')
    await flushPromises()
    expect(calls2.filter((c) => c.method === 'POST').map((c) => c.url)).toEqual(['/api/bulk-operations/op1/retry-failed'])
    expect(w.find('[data-testid="bulk-retry"]').exists()).toBe(false)
    expect(w.get('[data-testid="bulk-op-status"]').attributes('data-status')).toBe('queued')
    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(0)
    w.unmount()
  })

  it('does not offer Retry failed on a canceled operation, whose failed items the Hub will not retry', async () => {
    mockFetch({ 'GET /api/bulk-operations/op1': { body: detail({ status: 'canceled', ...counts({ failed: 1, success: 1, canceled: 1 }) }) } })
    const w = await render(BulkOperationView, { id: 'op1' })
    expect(w.find('[data-testid="bulk-retry"]').exists()).toBe(false)
    expect(w.find('[data-testid="bulk-cancel"]').exists()).toBe(false)
    w.unmount()
  })

  it('hides Retry failed and Cancel from a viewer; an operator may cancel but not retry an admin’s kind', async () => {
    const running = detail({ status: 'running', ...counts({ success: 1, failed: 1, running: 1 }), items: [item('a', 'success'), item('b', 'failed'), item('c', 'running')] })
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] }) // it polls while running; no tick is needed here
    signInAs('viewer')
    const calls = mockFetch({ 'GET /api/bulk-operations/op1': { body: running } })
    let w = await render(BulkOperationView, { id: 'op1' })
    expect(w.findAll('[data-testid="bulk-item"]')).toHaveLength(3)
    expect(w.findAll('[data-testid="bulk-retry"], [data-testid="bulk-cancel"]')).toHaveLength(0)
    w.unmount()

    signInAs('operator')
    w = await render(BulkOperationView, { id: 'op1' })
    expect(w.find('[data-testid="bulk-cancel"]').exists()).toBe(true)
    expect(w.find('[data-testid="bulk-retry"]').exists()).toBe(false) // adding labels is an admin's
    w.unmount()

    // sync_config_now is an operator's: retrying it is too.
    mockFetch({ 'GET /api/bulk-operations/op1': { body: { ...running, kind: 'sync_config_now', payload: {} } } })
    w = await render(BulkOperationView, { id: 'op1' })
    expect(w.find('[data-testid="bulk-retry"]').exists()).toBe(true)
    w.unmount()
    expect(calls.filter((c) => c.method !== 'GET')).toHaveLength(0)
  })

  it('cancels after confirming', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    let canceled = false
    const calls = mockFetch({
      'GET /api/bulk-operations/op1': () => ({
        body: canceled
          ? detail({ status: 'canceled', ...counts({ success: 1, canceled: 2 }) })
          : detail({ status: 'running', ...counts({ success: 1, running: 1, queued: 1 }) }),
      }),
      'POST /api/bulk-operations/op1/cancel': () => {
        canceled = true
        return { status: 204 }
      },
    })
    const w = await render(BulkOperationView, { id: 'op1' })
    await w.get('[data-testid="bulk-cancel"]').trigger('click')
    await flushPromises()
    const ok = [...document.querySelectorAll('.n-dialog .n-button')].find((b) => b.textContent?.trim() === en.bulk.cancel) as HTMLElement
    expect(ok).toBeTruthy()
    ok.click()
    await flushPromises()
    expect(calls.filter((c) => c.method === 'POST').map((c) => c.url)).toEqual(['/api/bulk-operations/op1/cancel'])
    expect(w.get('[data-testid="bulk-op-status"]').attributes('data-status')).toBe('canceled')
    expect(w.find('[data-testid="bulk-cancel"]').exists()).toBe(false)
    w.unmount()
  })

  it('polls while queued or running and stops once done', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const answers = [
      detail({ status: 'queued', ...counts({ success: 0, queued: 3 }), items: [item('a', 'queued'), item('b', 'queued'), item('c', 'queued')] }),
      detail({ status: 'running', ...counts({ success: 1, running: 1, queued: 1 }), items: [item('a', 'success'), item('b', 'running'), item('c', 'queued')] }),
      detail(),
    ]
    const calls = mockFetch({ 'GET /api/bulk-operations/op1': () => ({ body: answers.length > 1 ? answers.shift() : answers[0] }) })
    const gets = () => calls.filter((c) => c.url === '/api/bulk-operations/op1').length
    const w = await render(BulkOperationView, { id: 'op1' })
    expect(gets()).toBe(1)
    await vi.advanceTimersByTimeAsync(1500)
    await flushPromises()
    expect(gets()).toBe(2)
    expect(w.get('[data-testid="bulk-op-status"]').attributes('data-status')).toBe('running')
    await vi.advanceTimersByTimeAsync(1500)
    await flushPromises()
    expect(gets()).toBe(3)
    expect(w.get('[data-testid="bulk-op-status"]').attributes('data-status')).toBe('done')
    expect(w.findAll('[data-testid="bulk-item"]').map((r) => r.attributes('data-status'))).toEqual(['success', 'success', 'success'])
    await vi.advanceTimersByTimeAsync(60_000)
    expect(gets()).toBe(3)
    w.unmount()
  })

  it('stops polling when the page is left, even with a request in flight', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const calls = mockFetch({ 'GET /api/bulk-operations/op1': { body: detail({ status: 'running', ...counts({ running: 3, success: 0 }) }) } })
    const w = await render(BulkOperationView, { id: 'op1' })
    vi.advanceTimersByTime(1500) // the second poll starts…
    w.unmount() // …and the user leaves before it is answered
    await flushPromises()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(calls.filter((c) => c.url === '/api/bulk-operations/op1')).toHaveLength(2)
  })

  it('stops polling on a 404 and says why', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const calls = mockFetch({
      'GET /api/bulk-operations/nope': { status: 404, body: { error: 'bulk_operation_not_found', message: 'Bulk operation not found', request_id: 'rq-b' } },
    })
    const w = await render(BulkOperationView, { id: 'nope' })
    await vi.advanceTimersByTimeAsync(60_000)
    expect(calls).toHaveLength(1)
    expect(w.get('[data-testid="error-alert"]').text()).toContain('Bulk operation not found')
    w.unmount()
  })
})

describe('creating a bulk operation', () => {
  const deployPreview = {
    kind: 'job_deploy', source_job_id: 'j1', name_template: '{name} ({node})',
    items: [
      { agent_id: 'a', agent_name: 'nas', planned_name: 'Docs (a)', valid: true, error: null },
      { agent_id: 'b', agent_name: null, planned_name: 'Docs (b) #2', valid: false, error: 'no webdav secret "x" on node b' },
    ],
  }

  it('deploys a job from its page only after a preview of clone names and conflicts, then opens the operation', async () => {
    const calls = mockFetch({
      'GET /api/jobs/j1': { body: { id: 'j1', name: 'Docs', agent_id: null, schedule: null, schedule_timezone: 'UTC', overlap_policy: 'queue', created_at: NOW, updated_at: NOW, archived_at: null, spec: { v: 1, type: 'filesystem', source: { paths: ['/srv'] }, target: { type: 'local_dir', base_dir: '/b' } } } },
      'GET /api/jobs/j1/runs': { body: [] },
      'GET /api/jobs/j1/snapshots': { body: { items: [], next_cursor: null } },
      'GET /api/agents/labels': { body: [{ label: 'prod', count: 2 }] },
      'POST /api/bulk-operations/preview': { body: deployPreview },
      'POST /api/bulk-operations': { body: { op_id: 'op9' } },
    })
    const w = await render(JobDetailView, { id: 'j1' })
    await w.get('[data-testid="job-deploy"]').trigger('click')
    await flushPromises()
    expect(byTestId('bulk-source-job')[0].textContent).toBe('Docs')
    // Nothing to create before a preview, and no preview before the agents are chosen.
    expect(byTestId('bulk-create')).toHaveLength(0)
    expect(buttonIn('bulk-preview-btn')!.hasAttribute('disabled')).toBe(true)
    const sel = w.findAllComponents(NSelect).find((c) => c.attributes('data-testid') === 'bulk-selector-labels')!
    sel.vm.$emit('update:value', ['prod'])
    await flushPromises()
    buttonIn('bulk-preview-btn')!.click()
    await flushPromises()

    const preview = calls.find((c) => c.url === '/api/bulk-operations/preview')!
    expect(preview.body).toEqual({ kind: 'job_deploy', selector: { labels: ['prod'], labels_mode: 'and' }, payload: { source_job_id: 'j1', name_template: '{name} ({node})' } })
    const rows = byTestId('bulk-preview-row')
    expect(rows.map((r) => r.querySelector('[data-testid="bulk-preview-planned"]')!.textContent)).toEqual(['Docs (a)', 'Docs (b) #2'])
    expect(rows[1].getAttribute('data-ok')).toBe('false')
    expect(rows[1].textContent).toContain('no webdav secret "x" on node b')
    expect(byTestId('bulk-preview-invalid')[0].textContent).toBe('1 will fail')
    expect(calls.filter((c) => c.url === '/api/bulk-operations')).toHaveLength(0)

    buttonIn('bulk-create')!.click()
    await flushPromises()
    const created = calls.filter((c) => c.url === '/api/bulk-operations')
    expect(created).toHaveLength(1)
    expect(created[0].body).toEqual(preview.body)
    expect(router.currentRoute.value.fullPath).toBe('/bulk-operations/op9')
    w.unmount()
  })

  it('drops the preview when the choice changes, so what is created is what was previewed', async () => {
    mockFetch({
      'GET /api/agents/labels': { body: [] },
      'POST /api/bulk-operations/preview': { body: deployPreview },
    })
    const w = await render(BulkCreateModal, { show: true, kind: 'job_deploy', sourceJobId: 'j1', sourceJobName: 'Docs' })
    const sel = w.findAllComponents(NSelect).find((c) => c.attributes('data-testid') === 'bulk-selector-labels')!
    sel.vm.$emit('update:value', ['prod'])
    await flushPromises()
    buttonIn('bulk-preview-btn')!.click()
    await flushPromises()
    expect(byTestId('bulk-create')).toHaveLength(1)
    sel.vm.$emit('update:value', ['prod', 'eu'])
    await flushPromises()
    expect(byTestId('bulk-create')).toHaveLength(0)
    expect(byTestId('bulk-preview')).toHaveLength(0)
    w.unmount()
  })

  it('labels the agents picked on the agents page after listing them', async () => {
    const agent = (id: string, name: string) => ({ id, name, revoked: false, last_seen_at: NOW, online: true, labels: [], config_sync_status: 'synced' })
    const calls = mockFetch({
      'GET /api/agents': { body: { items: [agent('a', 'nas'), agent('b', 'web'), agent('c', 'db')], page: 1, page_size: 3, total: 3 } },
      'GET /api/agents/labels': { body: [] },
      'POST /api/bulk-operations': { body: { op_id: 'op7' } },
    })
    const w = await render(AgentsView)
    // Pick two rows with their checkboxes.
    const boxes = w.get('[data-testid="agents-table"]').findAll('tbody .n-checkbox')
    expect(boxes).toHaveLength(3)
    await boxes[0].trigger('click')
    await boxes[2].trigger('click')
    await flushPromises()
    expect(w.get('[data-testid="agents-bulk"]').text()).toContain('2 selected')
    await w.get('[data-testid="agents-bulk"]').trigger('click')
    await flushPromises()
    const opt = [...document.querySelectorAll('.n-dropdown-option')].find((o) => o.textContent?.trim() === en.bulk.kind.agent_labels_add) as HTMLElement
    expect(opt).toBeTruthy()
    opt.querySelector<HTMLElement>('.n-dropdown-option-body')!.click()
    await flushPromises()
    expect(byTestId('bulk-target-selected')[0].textContent).toContain('The 2 selected agents')
    const labels = w.findAllComponents(NSelect).find((c) => c.attributes('data-testid') === 'bulk-payload-labels')!
    labels.vm.$emit('update:value', ['fleet'])
    await flushPromises()
    expect(byTestId('bulk-create')).toHaveLength(0)
    buttonIn('bulk-preview-btn')!.click()
    await flushPromises()
    expect(byTestId('bulk-preview-row').map((r) => r.getAttribute('data-agent'))).toEqual(['a', 'c'])
    expect(calls.some((c) => c.url.startsWith('/api/bulk-operations/preview'))).toBe(false) // the Hub previews only deploys and distributions
    buttonIn('bulk-create')!.click()
    await flushPromises()
    const created = calls.filter((c) => c.url === '/api/bulk-operations')
    expect(created.map((c) => c.body)).toEqual([{ kind: 'agent_labels_add', selector: { node_ids: ['a', 'c'] }, payload: { labels: ['fleet'] } }])
    expect(router.currentRoute.value.fullPath).toBe('/bulk-operations/op7')
    w.unmount()
  })

  it('offers a viewer no bulk action on the agents page and no deploy on a job', async () => {
    signInAs('viewer')
    mockFetch({
      'GET /api/agents': { body: { items: [{ id: 'a', name: 'nas', revoked: false, last_seen_at: NOW, online: true, labels: [], config_sync_status: 'synced' }], page: 1, page_size: 1, total: 1 } },
      'GET /api/jobs/j1': { body: { id: 'j1', name: 'Docs', agent_id: null, schedule: null, schedule_timezone: 'UTC', overlap_policy: 'queue', created_at: NOW, updated_at: NOW, archived_at: null, spec: { v: 1, type: 'filesystem', source: { paths: ['/srv'] }, target: { type: 'local_dir', base_dir: '/b' } } } },
      'GET /api/jobs/j1/runs': { body: [] },
      'GET /api/jobs/j1/snapshots': { body: { items: [], next_cursor: null } },
    })
    let w = await render(AgentsView)
    expect(w.find('[data-testid="agents-bulk"]').exists()).toBe(false)
    expect(w.get('[data-testid="agents-table"]').findAll('.n-checkbox')).toHaveLength(0)
    w.unmount()
    w = await render(JobDetailView, { id: 'j1' })
    expect(w.find('[data-testid="job-title"]').exists()).toBe(true)
    expect(w.find('[data-testid="job-deploy"]').exists()).toBe(false)
    w.unmount()
  })
  it('distributes a Hub WebDAV credential from the integrations page, showing who gets it and who is skipped', async () => {
    const dist = {
      secret_kinds: ['webdav'],
      credentials: [
        { kind: 'webdav', name: 'nas', on_hub: true, agents: ['a'], missing_agents: [] },
        { kind: 'webdav', name: 'offsite', on_hub: false, agents: [], missing_agents: ['a'] },
      ],
      agents: [{ agent_id: 'a', name: 'web-1', online: true, credentials: ['nas'] }],
      notifications: [],
    }
    const calls = mockFetch({
      'GET /api/integrations': { body: { storage: { secret_kinds: ['webdav'], nodes: 1, credentials: 1, jobs_using_credentials: 0, missing: 0 }, distribution: { agents: 1, agents_with_credentials: 1 }, notifications: { channels: 0, destinations: 0, enabled_destinations: 0, unconfigured_channels: [] } } },
      'GET /api/integrations/storage': { body: { secret_kinds: ['webdav'], nodes: [] } },
      'GET /api/integrations/distribution': { body: dist },
      'GET /api/agents/labels': { body: [{ label: 'prod', count: 2 }] },
      'GET /api/secrets/webdav': { body: [{ name: 'nas', updated_at: NOW }] },
      'POST /api/bulk-operations/preview': {
        body: { kind: 'webdav_secret_distribute', secret_name: 'nas', overwrite: false, items: [
          { agent_id: 'a', agent_name: 'web-1', action: 'skip', note: 'already exists' },
          { agent_id: 'b', agent_name: 'web-2', action: 'update', note: null },
        ] },
      },
    })
    const w = await render(IntegrationsView)
    // Only a credential the Hub holds can be distributed.
    const buttons = w.findAll('[data-testid="distribution-distribute"]')
    expect(buttons).toHaveLength(1)
    await buttons[0].trigger('click')
    await flushPromises()
    const sel = w.findAllComponents(NSelect).find((c) => c.attributes('data-testid') === 'bulk-selector-labels')!
    sel.vm.$emit('update:value', ['prod'])
    await flushPromises()
    buttonIn('bulk-preview-btn')!.click()
    await flushPromises()
    expect(calls.find((c) => c.url === '/api/bulk-operations/preview')!.body).toEqual({
      kind: 'webdav_secret_distribute', selector: { labels: ['prod'], labels_mode: 'and' }, payload: { name: 'nas', overwrite: false },
    })
    const rows = byTestId('bulk-preview-row')
    expect(rows.map((r) => r.querySelector('[data-testid="bulk-preview-planned"]')!.textContent)).toEqual([en.bulk.preview.skip, en.bulk.preview.update])
    expect(rows[0].textContent).toContain('already exists')
    w.unmount()

    signInAs('operator')
    const w2 = await render(IntegrationsView)
    expect(w2.findAll('[data-testid="distribution-distribute"]')).toHaveLength(0)
    w2.unmount()
  })
})

// The incomplete-run cleanup page: rows show status, attempts and last error; filters and paging go
// to the Hub; retry/ignore/unignore call their routes; a viewer reads the list without actions; an
// empty list says what to do next.
import { describe, expect, it } from 'vitest'
import { flushPromises } from '@vue/test-utils'
import { NSelect } from 'naive-ui'
import en from '@/i18n/en'
import { mockFetch, type Call } from './fetchMock'
import { asSignedInAdmin, mountView, signInAs } from './mountView'
import MaintenanceView from '@/views/MaintenanceView.vue'

const task = (n: number, over: Record<string, unknown> = {}) => ({
  run_id: `0000000${n}-aaaa-bbbb-cccc-000000000000`, job_id: 'j1', node_id: 'hub', target_type: 'webdav', status: 'retrying',
  attempts: 3, last_attempt_at: 1_700_000_000, next_attempt_at: 1_700_000_600, last_error_kind: 'network', last_error: 'dial tcp: connection refused',
  ignored_at: null, ignored_by_user_id: null, ignore_reason: null, created_at: 1_699_999_000, updated_at: 1_700_000_000,
  target_snapshot: { node_id: 'hub', target: { type: 'webdav' } }, ...over,
})

asSignedInAdmin()

async function render() {
  return (await mountView(MaintenanceView, {}, { path: '/maintenance' })).w
}

const listQueries = (calls: Call[]) =>
  calls.filter((c) => c.method === 'GET' && c.url.startsWith('/api/maintenance/incomplete-cleanup')).map((c) => new URL(c.url, 'http://x').searchParams)

// Picks an option of a filter by its label, the way a user would see it.
async function pick(w: Awaited<ReturnType<typeof render>>, testid: string, label: string) {
  const select = w.findAllComponents(NSelect).find((c) => c.attributes('data-testid') === testid)!
  const opt = (select.props('options') as { value: string; label: string }[]).find((o) => o.label === label)
  expect(opt, `option ${label}`).toBeTruthy()
  select.vm.$emit('update:value', opt!.value)
  await flushPromises()
}

describe('maintenance page', () => {
  it('lists cleanup tasks with status, attempts and last error, and pages through the Hub', async () => {
    const calls = mockFetch({
      'GET /api/maintenance/incomplete-cleanup': (c) =>
        new URL(c.url, 'http://x').searchParams.get('page') === '2'
          ? { body: { items: [task(3, { status: 'done', last_error: null, last_error_kind: null })], page: 2, page_size: 20, total: 21 } }
          : {
              body: {
                items: [task(1), task(2, { status: 'ignored', target_type: 'local_dir', ignore_reason: 'target decommissioned' })],
                page: 1, page_size: 20, total: 21,
              },
            },
    })
    const w = await render()
    const rows = w.findAll('[data-testid="maint-row"]')
    expect(rows).toHaveLength(2)
    expect(rows[0].get('[data-testid="maint-status"]').text()).toBe(en.maintenance.status.retrying)
    expect(rows[0].get('[data-testid="maint-attempts"]').text()).toBe('3')
    expect(rows[0].get('[data-testid="maint-error"]').text()).toContain('dial tcp: connection refused')
    expect(rows[0].get('[data-testid="maint-error"]').text()).toContain('network')
    expect(rows[0].text()).toContain('00000001')
    expect(rows[1].get('[data-testid="maint-status"]').text()).toBe(en.maintenance.status.ignored)
    expect(rows[1].text()).toContain('target decommissioned')
    expect(rows[1].get('[data-testid="maint-next"]').text()).toBe('-') // ignored: nothing scheduled
    expect(rows[0].get('[data-testid="maint-next"]').text()).not.toBe('-')
    expect(listQueries(calls)[0].get('page')).toBe('1')
    expect(listQueries(calls)[0].get('page_size')).toBe('20')

    const next = w.get('[data-testid="maint-pages"]').findAll('.n-pagination-item').find((i) => i.text() === '2')!
    await next.trigger('click')
    await flushPromises()
    expect(listQueries(calls).at(-1)!.get('page')).toBe('2')
    expect(w.findAll('[data-testid="maint-row"]')).toHaveLength(1)
    w.unmount()
  })

  it('sends the status and target type filters, back to page one', async () => {
    const calls = mockFetch({ 'GET /api/maintenance/incomplete-cleanup': { body: { items: [task(1)], page: 1, page_size: 20, total: 1 } } })
    const w = await render()
    await pick(w, 'maint-filter-status', en.maintenance.status.blocked)
    expect(listQueries(calls).at(-1)!.get('status')).toBe('blocked')
    await pick(w, 'maint-filter-target', en.editor.targets.webdav)
    const q = listQueries(calls).at(-1)!
    expect(q.get('status')).toBe('blocked')
    expect(q.get('target_type')).toBe('webdav')
    expect(q.get('page')).toBe('1')
    w.unmount()
  })

  it('retries, ignores (after confirming) and unignores through their routes, then reloads', async () => {
    const calls = mockFetch({
      'GET /api/maintenance/incomplete-cleanup': { body: { items: [task(1), task(2, { status: 'ignored' })], page: 1, page_size: 20, total: 2 } },
      [`POST /api/maintenance/incomplete-cleanup/${task(1).run_id}/retry-now`]: { status: 204 },
      [`POST /api/maintenance/incomplete-cleanup/${task(1).run_id}/ignore`]: { status: 204 },
      [`POST /api/maintenance/incomplete-cleanup/${task(2).run_id}/unignore`]: { status: 204 },
    })
    const w = await render()
    const [first, second] = w.findAll('[data-testid="maint-row"]')
    expect(second.find('[data-testid="maint-retry"]').exists()).toBe(false)
    expect(second.find('[data-testid="maint-ignore"]').exists()).toBe(false)

    await first.get('[data-testid="maint-retry"]').trigger('click')
    await flushPromises()
    await first.get('[data-testid="maint-ignore"]').trigger('click')
    await flushPromises()
    const ok = [...document.querySelectorAll('.n-dialog .n-button')].find((b) => b.textContent?.trim() === en.maintenance.ignore) as HTMLElement
    expect(ok).toBeTruthy()
    ok.click()
    await flushPromises()
    await w.findAll('[data-testid="maint-row"]')[1].get('[data-testid="maint-unignore"]').trigger('click')
    await flushPromises()

    const posts = calls.filter((c) => c.method === 'POST').map((c) => c.url.split('/').slice(-2).join('/'))
    expect(posts).toEqual([`${task(1).run_id}/retry-now`, `${task(1).run_id}/ignore`, `${task(2).run_id}/unignore`])
    expect(listQueries(calls)).toHaveLength(4) // the first load and one after each action
    w.unmount()
  })

  it('shows a viewer the list without any action', async () => {
    signInAs('viewer')
    const calls = mockFetch({ 'GET /api/maintenance/incomplete-cleanup': { body: { items: [task(1), task(2, { status: 'ignored' })], page: 1, page_size: 20, total: 2 } } })
    const w = await render()
    expect(w.findAll('[data-testid="maint-row"]')).toHaveLength(2)
    expect(w.findAll('[data-testid="maint-retry"], [data-testid="maint-ignore"], [data-testid="maint-unignore"]')).toHaveLength(0)
    expect(w.get('[data-testid="maint-readonly"]').text()).toBe(en.maintenance.readOnly)
    expect(calls.filter((c) => c.method !== 'GET')).toHaveLength(0)
    w.unmount()
  })

  it('lets an operator retry but not ignore', async () => {
    signInAs('operator')
    mockFetch({ 'GET /api/maintenance/incomplete-cleanup': { body: { items: [task(1)], page: 1, page_size: 20, total: 1 } } })
    const w = await render()
    expect(w.find('[data-testid="maint-retry"]').exists()).toBe(true)
    expect(w.find('[data-testid="maint-ignore"]').exists()).toBe(false)
    w.unmount()
  })

  it('says there is nothing to clean up and points at the runs, or offers to clear filters', async () => {
    mockFetch({ 'GET /api/maintenance/incomplete-cleanup': { body: { items: [], page: 1, page_size: 20, total: 0 } } })
    const w = await render()
    expect(w.get('[data-testid="list-empty"]').text()).toContain(en.maintenance.empty)
    expect(w.get('[data-testid="maint-empty-runs"]').attributes('href')).toBe('/runs')
    await pick(w, 'maint-filter-status', en.maintenance.status.blocked)
    expect(w.get('[data-testid="list-empty"]').text()).toContain(en.maintenance.emptyFiltered)
    await w.get('[data-testid="maint-clear-filters"]').trigger('click')
    await flushPromises()
    expect(w.get('[data-testid="list-empty"]').text()).toContain(en.maintenance.empty)
    w.unmount()
  })
})

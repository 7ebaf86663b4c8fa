// The global runs page: rows link to their run, "Load more" follows the Hub's cursor, filters go
// to the Hub as query parameters, and an empty list says what to do next.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { createMemoryHistory, createRouter } from 'vue-router'
import { defineComponent, h } from 'vue'
import { NDialogProvider, NMessageProvider } from 'naive-ui'
import { i18n } from '@/i18n'
import en from '@/i18n/en'
import { mockFetch } from './fetchMock'
import RunsView from '@/views/RunsView.vue'

const item = (id: string, over: Record<string, unknown> = {}) => ({
  id, job_id: 'j1', job_name: 'nightly-web', node_id: 'hub', status: 'success', started_at: 1_700_000_000, ended_at: 1_700_000_060,
  error: null, cancel_requested_at: null, cancel_reason: null, executed_offline: false,
  issues_warnings_total: null, issues_errors_total: null, consistency_total: null, consistency_signal_total: null, ...over,
})
const choices = {
  'GET /api/jobs': { body: { items: [{ id: 'j1', name: 'nightly-web' }], page: 1, page_size: 100, total: 1 } },
  'GET /api/agents': { body: { items: [{ id: 'ag1', name: 'nas', labels: [] }], page: 1, page_size: 100, total: 1 } },
}

beforeEach(() => {
  setActivePinia(createPinia())
  i18n.global.locale.value = 'en'
})
afterEach(() => vi.unstubAllGlobals())

async function render() {
  const router = createRouter({ history: createMemoryHistory(), routes: [{ path: '/:p(.*)*', component: { render: () => null } }] })
  await router.push('/runs')
  const Host = defineComponent({ render: () => h(NMessageProvider, () => h(NDialogProvider, () => h(RunsView))) })
  const w = mount(Host, { global: { plugins: [i18n, router] }, attachTo: document.body })
  await flushPromises()
  return w
}

describe('runs page', () => {
  it('lists runs with links, node names and badges, and loads more by cursor', async () => {
    const calls = mockFetch({
      ...choices,
      'GET /api/runs': (c) =>
        c.url.includes('cursor=c1')
          ? { body: { items: [item('r3')], next_cursor: null } }
          : {
              body: {
                items: [
                  item('r1', { issues_errors_total: 2, consistency_signal_total: 1 }),
                  item('r2', { node_id: 'ag1', status: 'failed', error: 'target unreachable', executed_offline: true }),
                ],
                next_cursor: 'c1',
              },
            },
    })
    const w = await render()
    const rows = w.findAll('[data-testid="runs-row"]')
    expect(rows).toHaveLength(2)
    expect(w.findAll('[data-testid="runs-row-link"]').map((a) => a.attributes('href'))).toEqual(['/runs/r1', '/runs/r2'])
    expect(rows[0].text()).toContain('Errors: 2')
    expect(rows[0].text()).toContain('Source risk: 1')
    expect(rows[1].text()).toContain('nas')
    expect(rows[1].text()).toContain('target unreachable')
    expect(rows[1].text()).toContain(en.runs.badges.offline)

    await w.get('[data-testid="runs-load-more"]').trigger('click')
    await flushPromises()
    expect(w.findAll('[data-testid="runs-row"]')).toHaveLength(3)
    expect(w.find('[data-testid="runs-load-more"]').exists()).toBe(false)
    const pages = calls.filter((c) => c.url.startsWith('/api/runs'))
    expect(pages.map((c) => new URL(c.url, 'http://x').searchParams.get('cursor'))).toEqual([null, 'c1'])
    w.unmount()
  })

  it('sends the filters to the Hub and offers to clear them when nothing matches', async () => {
    const calls = mockFetch({ ...choices, 'GET /api/runs': { body: { items: [], next_cursor: null } } })
    const w = await render()
    // Unfiltered and empty: the next action is to go to the jobs.
    expect(w.get('[data-testid="list-empty"]').text()).toContain(en.runs.empty)
    expect(w.get('[data-testid="runs-go-jobs"]').attributes('href')).toBe('/jobs')

    const view = w.findComponent(RunsView)
    const selects = view.findAllComponents({ name: 'Select' })
    selects[0].vm.$emit('update:value', ['failed', 'running'])
    await flushPromises()
    selects[2].vm.$emit('update:value', 'ag1')
    await flushPromises()
    const last = new URL(calls.filter((c) => c.url.startsWith('/api/runs')).at(-1)!.url, 'http://x').searchParams
    expect(last.get('status')).toBe('failed,running')
    expect(last.get('node_id')).toBe('ag1')
    expect(w.get('[data-testid="list-empty"]').text()).toContain(en.runs.emptyFiltered)

    await w.get('[data-testid="runs-clear-filters"]').trigger('click')
    await flushPromises()
    const cleared = new URL(calls.filter((c) => c.url.startsWith('/api/runs')).at(-1)!.url, 'http://x').searchParams
    expect([...cleared.keys()]).toEqual(['limit'])
    w.unmount()
  })
})

// The audit log page: rows say who did what from where and how it ended, "Load more" follows the
// Hub's cursor, filters go to the Hub as query parameters, and an empty list says what to do next.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { createMemoryHistory, createRouter } from 'vue-router'
import { defineComponent, h } from 'vue'
import { NDialogProvider, NMessageProvider } from 'naive-ui'
import { i18n } from '@/i18n'
import en from '@/i18n/en'
import { mockFetch } from './fetchMock'
import AuditView from '@/views/AuditView.vue'

const item = (id: number, over: Record<string, unknown> = {}) => ({
  id, at: 1_700_000_000, actor_kind: 'user', user_id: 1, username: 'admin', token_id: null, token_name: null,
  client_ip: '203.0.113.9', action: 'PUT /api/jobs/{id}', object_kind: 'jobs', object_id: 'j1', request_id: `req-${id}`,
  status: 200, outcome: 'ok', ...over,
})

beforeEach(() => {
  setActivePinia(createPinia())
  i18n.global.locale.value = 'en'
})
afterEach(() => vi.unstubAllGlobals())

async function render() {
  const router = createRouter({ history: createMemoryHistory(), routes: [{ path: '/:p(.*)*', component: { render: () => null } }] })
  await router.push('/audit')
  const Host = defineComponent({ render: () => h(NMessageProvider, () => h(NDialogProvider, () => h(AuditView))) })
  const w = mount(Host, { global: { plugins: [i18n, router] }, attachTo: document.body })
  await flushPromises()
  return w
}

const lastQuery = (calls: { url: string }[]) =>
  new URL(calls.filter((c) => c.url.startsWith('/api/audit')).at(-1)!.url, 'http://x').searchParams

describe('audit log page', () => {
  it('lists who did what, from where, with the outcome, and loads more by cursor', async () => {
    const calls = mockFetch({
      'GET /api/audit': (c) =>
        c.url.includes('cursor=c1')
          ? { body: { items: [item(1, { actor_kind: 'agent', user_id: null, username: null, action: 'POST /agent/enroll', object_kind: 'agents', object_id: 'ag1' })], next_cursor: null } }
          : {
              body: {
                items: [
                  item(3),
                  item(2, { actor_kind: 'anonymous', user_id: null, username: 'mallory', action: 'POST /api/auth/login', object_kind: 'auth', object_id: null, status: 401, outcome: 'denied' }),
                ],
                next_cursor: 'c1',
              },
            },
    })
    const w = await render()
    let rows = w.findAll('[data-testid="audit-row"]')
    expect(rows).toHaveLength(2)
    expect(rows[0].text()).toContain('admin')
    expect(rows[0].text()).toContain('PUT /api/jobs/{id}')
    expect(rows[0].text()).toContain('jobs j1')
    expect(rows[0].text()).toContain('203.0.113.9')
    expect(rows[0].text()).toContain('req-3')
    expect(rows[1].get('[data-testid="audit-actor"]').text()).toBe('not signed in (tried mallory)')
    expect(rows[1].get('[data-testid="audit-outcome"]').text()).toContain(`${en.audit.outcome.denied} · 401`)

    await w.get('[data-testid="audit-load-more"]').trigger('click')
    await flushPromises()
    rows = w.findAll('[data-testid="audit-row"]')
    expect(rows).toHaveLength(3)
    expect(rows[2].get('[data-testid="audit-actor"]').text()).toBe(en.audit.actor.agent)
    expect(w.find('[data-testid="audit-load-more"]').exists()).toBe(false)
    expect(calls.filter((c) => c.url.startsWith('/api/audit')).map((c) => new URL(c.url, 'http://x').searchParams.get('cursor'))).toEqual([null, 'c1'])
    w.unmount()
  })

  it('sends the filters to the Hub and offers to clear them when nothing matches', async () => {
    const calls = mockFetch({ 'GET /api/audit': { body: { items: [], next_cursor: null } } })
    const w = await render()
    expect(w.get('[data-testid="list-empty"]').text()).toContain(en.audit.empty)
    expect(w.find('[data-testid="audit-empty-refresh"]').exists()).toBe(true)

    const view = w.findComponent(AuditView)
    view.findAllComponents({ name: 'Select' })[0].vm.$emit('update:value', 'DELETE /api/jobs/{id}')
    await flushPromises()
    await w.get('[data-testid="audit-filter-user"] input').setValue('admin')
    await w.get('[data-testid="audit-filter-user"] input').trigger('keyup', { key: 'Enter' })
    await flushPromises()
    let q = lastQuery(calls)
    expect(q.get('action')).toBe('DELETE /api/jobs/{id}')
    expect(q.get('username')).toBe('admin')

    view.findAllComponents({ name: 'DatePicker' })[0].vm.$emit('update:value', [1_700_000_000_000, 1_700_003_600_000])
    await flushPromises()
    q = lastQuery(calls)
    expect(q.get('from')).toBe('1700000000')
    expect(q.get('to')).toBe('1700003601')
    expect(w.get('[data-testid="list-empty"]').text()).toContain(en.audit.emptyFiltered)

    await w.get('[data-testid="audit-clear-filters"]').trigger('click')
    await flushPromises()
    expect([...lastQuery(calls).keys()]).toEqual(['limit'])
    w.unmount()
  })
})

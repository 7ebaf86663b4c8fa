import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { createMemoryHistory, createRouter } from 'vue-router'
import { defineComponent, h } from 'vue'
import { NDialogProvider, NMessageProvider } from 'naive-ui'
import { i18n } from '@/i18n'
import JobEditorView from '@/views/JobEditorView.vue'
import type { JobDetail } from '@/api/types'
import { mockFetch, type Call } from './fetchMock'

const job: JobDetail = {
  id: 'j1',
  name: 'web',
  agent_id: null,
  schedule: '30 2 * * *',
  schedule_timezone: 'UTC',
  overlap_policy: 'queue',
  missed_run_policy: 'run_once',
  created_at: 1,
  updated_at: 1,
  spec: {
    v: 1,
    type: 'filesystem',
    pipeline: { format: 'archive_v1', encryption: { type: 'none' } },
    notifications: { mode: 'inherit', wecom_bot: [], email: [] },
    retention: { enabled: false, keep_last: null, keep_days: null, max_delete_per_tick: 50, max_delete_per_day: 200 },
    source: {
      paths: ['/srv'], pre_scan: true, include: [], exclude: [], symlink_policy: 'keep', hardlink_policy: 'copy', error_policy: 'fail_fast',
      snapshot_mode: 'off', snapshot_provider: null, consistency_policy: 'warn', consistency_fail_threshold: null, upload_on_consistency_failure: null,
    },
    target: { type: 'webdav', base_url: 'https://dav.example/x', secret_name: 'nas', part_size_bytes: 268435456 },
  },
}

beforeEach(() => {
  setActivePinia(createPinia())
  i18n.global.locale.value = 'en'
})
afterEach(() => vi.unstubAllGlobals())

async function mountEditor(routes: Parameters<typeof mockFetch>[0]) {
  const calls = mockFetch({
    'GET /api/system': { body: { version: 't', insecure_http: false, hub_timezone: 'UTC' } },
    'GET /api/jobs/j1': { body: job },
    'GET /api/agents': { body: { items: [], page: 1, page_size: 20, total: 0 } },
    'GET /api/secrets/webdav': { body: [{ name: 'nas', updated_at: 1 }] },
    'GET /api/notifications/destinations': { body: [] },
    'GET /api/schedule/preview': { body: { times: ['2026-03-10T02:30:00Z'] } },
    ...routes,
  })
  const router = createRouter({ history: createMemoryHistory(), routes: [{ path: '/:p(.*)*', component: { render: () => null } }] })
  await router.push('/jobs/j1/edit')
  const Host = defineComponent({ render: () => h(NMessageProvider, () => h(NDialogProvider, () => h(JobEditorView, { id: 'j1' }))) })
  const wrapper = mount(Host, { global: { plugins: [i18n, router] }, attachTo: document.body })
  await flushPromises()
  return { wrapper, calls, router }
}

async function clickTestId(wrapper: ReturnType<typeof mount>, id: string, times = 1) {
  for (let i = 0; i < times; i++) {
    await wrapper.get(`[data-testid="${id}"]`).trigger('click')
    await flushPromises()
  }
}

describe('job editor', () => {
  it('saves the edited job as the mapped write body', async () => {
    const { wrapper, calls } = await mountEditor({ 'PUT /api/jobs/j1': { body: job } })
    await clickTestId(wrapper, 'editor-next', 7)
    await clickTestId(wrapper, 'editor-save')
    const put = calls.find((c: Call) => c.method === 'PUT')!
    expect(put.url).toBe('/api/jobs/j1')
    expect(put.body).toMatchObject({ name: 'web', agent_id: null, schedule: '30 2 * * *', schedule_timezone: 'UTC', overlap_policy: 'queue', missed_run_policy: 'run_once' })
    expect((put.body as { spec: unknown }).spec).toEqual(job.spec)
    wrapper.unmount()
  })

  it('shows an API validation error on the field it names, on that field’s step', async () => {
    const { wrapper } = await mountEditor({
      'PUT /api/jobs/j1': {
        status: 400,
        body: { error: 'invalid_webdav_secret', message: 'WebDAV secret "nas" not found for node hub', details: { field: 'spec.target.secret_name', reason: 'not_found' }, request_id: 'rq-42' },
      },
    })
    await clickTestId(wrapper, 'editor-next', 7)
    await clickTestId(wrapper, 'editor-save')
    // back on the target step, the credential field carries the Hub's message
    expect(wrapper.find('[data-testid="target-secret"]').exists()).toBe(true)
    const item = wrapper.get('[data-testid="target-secret"]').element.closest('.n-form-item')!
    expect(item.textContent).toContain('WebDAV secret "nas" not found for node hub')
    // and the error box quotes the request ID
    expect(wrapper.get('[data-testid="request-id"]').text()).toBe('rq-42')
    wrapper.unmount()
  })

  it('puts a timezone error on the schedule step', async () => {
    const { wrapper } = await mountEditor({
      'PUT /api/jobs/j1': { status: 400, body: { error: 'invalid_timezone', message: 'unknown time zone "Mars/Base"', details: { field: 'schedule_timezone' }, request_id: 'r' } },
    })
    await clickTestId(wrapper, 'editor-next', 7)
    await clickTestId(wrapper, 'editor-save')
    const item = wrapper.get('[data-testid="schedule-tz"]').element.closest('.n-form-item')!
    expect(item.textContent).toContain('unknown time zone "Mars/Base"')
    wrapper.unmount()
  })

  it('blocks saving a new job with local errors and shows them on the first step', async () => {
    const calls = mockFetch({ 'GET /api/system': { body: { version: 't', insecure_http: false, hub_timezone: 'UTC' } } })
    const router = createRouter({ history: createMemoryHistory(), routes: [{ path: '/:p(.*)*', component: { render: () => null } }] })
    const Host = defineComponent({ render: () => h(NMessageProvider, () => h(NDialogProvider, () => h(JobEditorView))) })
    const wrapper = mount(Host, { global: { plugins: [i18n, router] }, attachTo: document.body })
    await flushPromises()
    await clickTestId(wrapper, 'editor-next', 7)
    await clickTestId(wrapper, 'editor-save')
    expect(calls.some((c) => c.method === 'POST')).toBe(false)
    const item = wrapper.get('[data-testid="job-name"]').element.closest('.n-form-item')!
    expect(item.textContent).toContain('Required')
    wrapper.unmount()
  })
})

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { createMemoryHistory, createRouter } from 'vue-router'
import { defineComponent, h } from 'vue'
import { NDialogProvider, NMessageProvider, NSelect } from 'naive-ui'
import { i18n } from '@/i18n'
import JobEditorView from '@/views/JobEditorView.vue'
import SchedulePreview from '@/components/SchedulePreview.vue'
import type { JobDetail } from '@/api/types'
import { mockFetch, type Call } from './fetchMock'
import { useSessionStore } from '@/stores/session'

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
  // The editor saves only for an administrator.
  Object.assign(useSessionStore(), { state: 'authenticated', role: 'admin', username: 'admin' })
  i18n.global.locale.value = 'en'
})
afterEach(() => vi.unstubAllGlobals())

async function mountEditor(routes: Parameters<typeof mockFetch>[0], jobBody: JobDetail = job) {
  const calls = mockFetch({
    'GET /api/system': { body: { version: 't', insecure_http: false, hub_timezone: 'UTC' } },
    'GET /api/jobs/j1': { body: jobBody },
    'GET /api/agents': { body: { items: [], page: 1, page_size: 20, total: 0 } },
    'GET /api/nodes/hub/secrets/webdav': { body: [{ name: 'nas', updated_at: 1 }] },
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

  it('saves a plain file tree without encryption, and says why encryption is off', async () => {
    const { wrapper, calls } = await mountEditor({ 'PUT /api/jobs/j1': { body: job } })
    await clickTestId(wrapper, 'editor-next', 4)
    await wrapper.get('[data-testid="format-raw-tree"] input').setValue(true)
    await flushPromises()
    expect(wrapper.get('[data-testid="format-hint"]').text()).toContain('data/')
    expect(wrapper.get('[data-testid="encryption-raw-tree"]').text()).toContain('not available')
    expect(wrapper.get('[data-testid="encryption"]').classes()).toContain('n-switch--disabled')
    await clickTestId(wrapper, 'editor-next', 3)
    await clickTestId(wrapper, 'editor-save')
    const put = calls.find((c: Call) => c.method === 'PUT')!
    expect((put.body as { spec: { pipeline: unknown } }).spec.pipeline).toMatchObject({ format: 'raw_tree_v1', encryption: { type: 'none' } })
    wrapper.unmount()
  })

  it('shows a job’s hooks and GFS rules and saves them unchanged', async () => {
    const spec = {
      ...job.spec,
      retention: { ...job.spec.retention, enabled: true, keep_daily: 7, keep_weekly: 4 },
      hooks: {
        before: { command: ['pg_dump', '-f', '/srv/db.sql'], timeout_seconds: 600, on_failure: 'abort' as const },
        after: { command: ['curl', 'https://hc.example/ping'], timeout_seconds: 30, when: 'success' as const },
      },
    }
    const hooked: JobDetail = { ...job, spec }
    const { wrapper, calls } = await mountEditor({ 'PUT /api/jobs/j1': { body: hooked } }, hooked)
    await clickTestId(wrapper, 'editor-next', 1)
    const argv = wrapper.get('[data-testid="hook-before-command"]').findAll('input').map((i) => (i.element as HTMLInputElement).value)
    expect(argv).toEqual(['pg_dump', '-f', '/srv/db.sql'])
    expect(wrapper.text()).toContain('Hooks')
    await clickTestId(wrapper, 'editor-next', 4)
    expect((wrapper.get('[data-testid="retention-keep_daily"] input').element as HTMLInputElement).value).toBe('7')
    await clickTestId(wrapper, 'editor-next', 2)
    await clickTestId(wrapper, 'editor-save')
    const put = calls.find((c: Call) => c.method === 'PUT')!
    expect((put.body as { spec: unknown }).spec).toEqual(spec)
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

  it('offers the choices the Hub refuses only disabled, and stops a job that carries one before saving', async () => {
    const old = structuredClone(job) as JobDetail & { spec: { source: { snapshot_mode: string } } }
    old.spec.source.snapshot_mode = 'required'
    const { wrapper, calls } = await mountEditor({ 'PUT /api/jobs/j1': { body: job } }, old)
    await clickTestId(wrapper, 'editor-next', 1)
    const options = (id: string) =>
      (wrapper.findAllComponents(NSelect).find((c) => c.attributes('data-testid') === id)!.props('options') as { value: string; label: string; disabled?: boolean }[])
    // symlink follow is supported: offered enabled
    expect(options('symlink-policy').map((o) => [o.value, !!o.disabled])).toEqual([['keep', false], ['follow', false], ['skip', false]])
    expect(options('snapshot-mode').filter((o) => o.disabled).map((o) => [o.value, o.label])).toEqual([['required', 'Required (not supported yet)']])
    await clickTestId(wrapper, 'editor-next', 3)
    // raw_tree_v1 is supported: offered enabled
    expect(wrapper.get('[data-testid="format-raw-tree"] input').attributes('disabled')).toBeUndefined()
    await clickTestId(wrapper, 'editor-next', 3)
    await clickTestId(wrapper, 'editor-save')
    expect(calls.some((c) => c.method === 'PUT')).toBe(false)
    // back on the source step, on the snapshot field
    const item = wrapper.get('[data-testid="snapshot-mode"]').element.closest('.n-form-item')!
    expect(item.textContent).toContain('Not supported by this version')
    wrapper.unmount()
  })

  it('lists the Hub’s WebDAV credentials for a Hub job', async () => {
    const { wrapper, calls } = await mountEditor({})
    await clickTestId(wrapper, 'editor-next', 2)
    expect(calls.filter((c) => c.url.includes('/secrets/')).map((c) => c.url)).toEqual(['/api/nodes/hub/secrets/webdav'])
    expect(await credentialOptions(wrapper)).toEqual(['nas'])
    expect(wrapper.find('[data-testid="credential-missing"]').exists()).toBe(false)
    expect(wrapper.get('[data-testid="manage-credentials"]').attributes('href')).toBe('/settings')
    wrapper.unmount()
  })

  it('edits an S3 job: lists the node’s S3 credentials, shows its fields and saves the target unchanged', async () => {
    const target = { type: 's3', endpoint: 'https://s3.example', region: 'eu-west-1', bucket: 'bk', prefix: 'hosts/web', secret_name: 'store', path_style: true, part_size_bytes: 268435456 }
    const s3Job = { ...job, spec: { ...job.spec, target } } as unknown as JobDetail
    const { wrapper, calls } = await mountEditor(
      { 'GET /api/nodes/hub/secrets/s3': { body: [{ name: 'store', updated_at: 1, allowed_origins: ['https://s3.example:443'] }] }, 'PUT /api/jobs/j1': { body: s3Job } },
      s3Job,
    )
    await clickTestId(wrapper, 'editor-next', 2)
    expect(calls.filter((c) => c.url.includes('/secrets/')).map((c) => c.url)).toEqual(['/api/nodes/hub/secrets/s3'])
    // The form is an async component: its first import may land after the click's flush.
    await vi.waitFor(() => wrapper.get('[data-testid="s3-endpoint"] input'))
    expect((wrapper.get('[data-testid="s3-endpoint"] input').element as HTMLInputElement).value).toBe('https://s3.example')
    expect((wrapper.get('[data-testid="s3-bucket"] input').element as HTMLInputElement).value).toBe('bk')
    expect(await credentialOptions(wrapper)).toEqual(['store'])
    // Bound to the endpoint's origin: nothing to warn about.
    for (const id of ['credential-missing', 'credential-unbound', 'credential-other-server']) expect(wrapper.find(`[data-testid="${id}"]`).exists()).toBe(false)
    await clickTestId(wrapper, 'editor-next', 5)
    await clickTestId(wrapper, 'editor-save')
    const put = calls.find((c: Call) => c.method === 'PUT')!
    expect((put.body as { spec: { target: unknown } }).spec.target).toEqual(target)
    wrapper.unmount()
  })

  it('says when the credential is bound to another server, or to none yet', async () => {
    for (const [origins, shown, hidden] of [
      [['https://other.example:443'], 'credential-other-server', 'credential-unbound'],
      [[], 'credential-unbound', 'credential-other-server'],
    ] as const) {
      const { wrapper } = await mountEditor({ 'GET /api/nodes/hub/secrets/webdav': { body: [{ name: 'nas', updated_at: 1, allowed_origins: origins }] } })
      await clickTestId(wrapper, 'editor-next', 2)
      expect(wrapper.find(`[data-testid="${shown}"]`).exists()).toBe(true)
      expect(wrapper.find(`[data-testid="${hidden}"]`).exists()).toBe(false)
      if (origins.length) expect(wrapper.get(`[data-testid="${shown}"]`).text()).toContain('https://other.example:443')
      wrapper.unmount()
    }
    // Bound to the job's server (https://dav.example/x, default port): nothing to say.
    const { wrapper } = await mountEditor({ 'GET /api/nodes/hub/secrets/webdav': { body: [{ name: 'nas', updated_at: 1, allowed_origins: ['https://dav.example:443'] }] } })
    await clickTestId(wrapper, 'editor-next', 2)
    expect(wrapper.find('[data-testid="credential-other-server"]').exists()).toBe(false)
    expect(wrapper.find('[data-testid="credential-unbound"]').exists()).toBe(false)
    wrapper.unmount()
  })

  it('lists the agent’s own WebDAV credentials for an agent job, not the Hub’s', async () => {
    const agentJob: JobDetail = { ...job, agent_id: 'a1' }
    const { wrapper, calls } = await mountEditor(
      {
        'GET /api/agents': { body: { items: [{ id: 'a1', name: 'web-01', online: true, revoked: false, labels: [], last_seen_at: 1, config_sync_status: 'synced' }], page: 1, page_size: 20, total: 1 } },
        'GET /api/nodes/a1/secrets/webdav': { body: [{ name: 'agent-nas', updated_at: 1 }] },
      },
      agentJob,
    )
    await clickTestId(wrapper, 'editor-next', 2)
    expect(calls.filter((c) => c.url.includes('/secrets/')).map((c) => c.url)).toEqual(['/api/nodes/a1/secrets/webdav'])
    expect(await credentialOptions(wrapper)).toEqual(['agent-nas'])
    // the job names "nas", which exists only on the Hub: the editor says so before the Hub refuses
    expect(wrapper.get('[data-testid="credential-missing"]').text()).toContain('“nas” on web-01')
    expect(wrapper.get('[data-testid="manage-credentials"]').attributes('href')).toBe('/agents?credentials=a1')
    wrapper.unmount()
  })

  it('reloads the credential list when the job moves to another node', async () => {
    const { wrapper, calls } = await mountEditor({
      'GET /api/agents': { body: { items: [{ id: 'a1', name: 'web-01', online: true, revoked: false, labels: [], last_seen_at: 1, config_sync_status: 'synced' }], page: 1, page_size: 20, total: 1 } },
      'GET /api/nodes/a1/secrets/webdav': { body: [{ name: 'agent-nas', updated_at: 1 }] },
    })
    const node = wrapper.findAllComponents(NSelect).find((c) => c.attributes('data-testid') === 'job-node')!
    node.vm.$emit('update:value', 'a1')
    await flushPromises()
    await clickTestId(wrapper, 'editor-next', 2)
    expect(calls.filter((c) => c.url.includes('/secrets/')).map((c) => c.url)).toEqual(['/api/nodes/hub/secrets/webdav', '/api/nodes/a1/secrets/webdav'])
    expect(await credentialOptions(wrapper)).toEqual(['agent-nas'])
    wrapper.unmount()
  })

  it('shows why the agents or notification destinations could not be loaded, with the request ID', async () => {
    const { wrapper } = await mountEditor({
      'GET /api/agents': { status: 500, body: { error: 'internal_error', message: 'agents table locked', request_id: 'rq-a' } },
      'GET /api/notifications/destinations': { status: 503, body: { error: 'notifications_unavailable', message: 'notifications are off', request_id: 'rq-d' } },
    })
    expect(wrapper.get('[data-testid="error-alert"]').text()).toContain('Could not load the agents')
    expect(wrapper.get('[data-testid="request-id"]').text()).toBe('rq-a')
    await clickTestId(wrapper, 'editor-next', 6)
    expect(wrapper.get('[data-testid="error-alert"]').text()).toContain('Could not load the notification destinations')
    expect(wrapper.get('[data-testid="request-id"]').text()).toBe('rq-d')
    wrapper.unmount()
  })

  it('shows why the credentials could not be loaded, with the request ID', async () => {
    const { wrapper } = await mountEditor({
      'GET /api/nodes/hub/secrets/webdav': { status: 503, body: { error: 'secrets_unavailable', message: 'the secret store is not configured', request_id: 'rq-sec' } },
    })
    await clickTestId(wrapper, 'editor-next', 2)
    expect(wrapper.text()).toContain('the secret store is not configured')
    expect(wrapper.get('[data-testid="request-id"]').text()).toBe('rq-sec')
    wrapper.unmount()
  })
})

describe('schedule preview', () => {
  afterEach(() => vi.useRealTimers())

  it('shows why the Hub refused the preview with the code and request ID, as every error does', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] }) // the preview waits 250 ms after the last keystroke
    const calls = mockFetch({
      'GET /api/schedule/preview': { status: 400, body: { error: 'invalid_cron', message: 'minute 61 is out of range', request_id: 'rq-cron' } },
    })
    const wrapper = mount(SchedulePreview, { props: { cron: '61 * * * *', timezone: 'UTC' }, global: { plugins: [i18n] } })
    await vi.advanceTimersByTimeAsync(250)
    await flushPromises()
    expect(calls.map((c) => c.url)).toEqual(['/api/schedule/preview?cron=61+*+*+*+*&timezone=UTC&count=5'])
    const alert = wrapper.get('[data-testid="schedule-preview-error"] [data-testid="error-alert"]')
    expect(alert.text()).toContain('Could not preview the schedule')
    expect(alert.text()).toContain('minute 61 is out of range')
    expect(alert.text()).toContain('invalid_cron')
    expect(alert.get('[data-testid="request-id"]').text()).toBe('rq-cron')
    expect(wrapper.find('li').exists()).toBe(false)
    wrapper.unmount()
  })
})

/** The names the credential select offers. */
async function credentialOptions(wrapper: ReturnType<typeof mount>): Promise<string[]> {
  const select = wrapper.findAllComponents(NSelect).find((c) => c.attributes('data-testid') === 'target-secret')!
  return (select.props('options') as { value: string }[]).map((o) => o.value)
}

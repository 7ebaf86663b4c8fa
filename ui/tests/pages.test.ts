// Mounts each page against canned API answers and checks it renders its data (and survives the
// shapes the Hub sends), so a page that throws at run time fails here before it fails in a browser.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import type { Component } from 'vue'
import { i18n } from '@/i18n'
import { mockFetch } from './fetchMock'
import { mountView, signInAs } from './mountView'
import JobDetailView from '@/views/JobDetailView.vue'
import RunDetailView from '@/views/RunDetailView.vue'
import RestoreView from '@/views/RestoreView.vue'
import OperationView from '@/views/OperationView.vue'
import AgentsView from '@/views/AgentsView.vue'
import NotificationsView from '@/views/NotificationsView.vue'
import SettingsView from '@/views/SettingsView.vue'
import JobsView from '@/views/JobsView.vue'
import DashboardView from '@/views/DashboardView.vue'
import UsersView from '@/views/UsersView.vue'

const NOW = Math.floor(Date.now() / 1000)
const spec = {
  v: 1, type: 'filesystem',
  pipeline: { format: 'archive_v1', encryption: { type: 'none' } },
  notifications: { mode: 'inherit', wecom_bot: [], email: [] },
  retention: { enabled: false, keep_last: null, keep_days: null, max_delete_per_tick: 50, max_delete_per_day: 200 },
  source: { paths: ['/srv'] },
  target: { type: 'local_dir', base_dir: '/b', part_size_bytes: 1048576 },
}
const job = { id: 'j1', name: 'nightly-web', agent_id: null, schedule: '0 3 * * *', schedule_timezone: 'UTC', overlap_policy: 'queue', created_at: 1, updated_at: 1, next_run_at: NOW + 3600, spec }
const run = { id: 'r1', job_id: 'j1', job_name: 'nightly-web', status: 'running', started_at: NOW - 60, ended_at: null, error: null,
  progress: { v: 1, kind: 'backup', stage: 'upload', ts: NOW, done: { files: 5, dirs: 1, bytes: 512 }, total: { files: 10, dirs: 1, bytes: 1024 }, rate_bps: 100, eta_seconds: 5 } }
const snapshot = { run_id: 'r0', job_id: 'j1', node_id: 'hub', target_type: 'local_dir', artifact_format: 'archive_v1', status: 'present', started_at: NOW - 900, ended_at: NOW - 800, pinned_at: NOW - 10, transfer_bytes: 2048, source_bytes: 4096 }

class FakeWS {
  static last: FakeWS | null = null
  onopen: ((e: unknown) => void) | null = null
  onmessage: ((e: { data: string }) => void) | null = null
  onclose: ((e: { code: number }) => void) | null = null
  onerror: ((e: unknown) => void) | null = null
  constructor(readonly url: string) {
    FakeWS.last = this
  }
  close() {}
}

// Pages render for a signed-in administrator unless a test says otherwise (signInAs).
beforeEach(() => {
  setActivePinia(createPinia())
  signInAs('admin')
  i18n.global.locale.value = 'en'
  vi.stubGlobal('WebSocket', FakeWS)
})
afterEach(() => {
  vi.useRealTimers()
  vi.unstubAllGlobals()
})

async function render(view: Component, props: Record<string, unknown> = {}, stubs: Record<string, boolean> = {}) {
  return (await mountView(view, props, { stubs })).w
}

describe('pages', () => {
  it('job detail lists runs and snapshots with their actions', async () => {
    mockFetch({
      'GET /api/jobs/j1': { body: job },
      'GET /api/jobs/j1/runs': { body: [{ id: 'r0', status: 'success', started_at: NOW - 900, ended_at: NOW - 800, error: null }] },
      'GET /api/jobs/j1/snapshots': { body: { items: [snapshot], next_cursor: null } },
    })
    const w = await render(JobDetailView, { id: 'j1' })
    expect(w.get('[data-testid="job-title"]').text()).toContain('nightly-web')
    expect(w.findAll('[data-testid="run-link"]')).toHaveLength(1)
    expect(w.find('[data-testid="pinned-tag"]').exists()).toBe(true)
    expect(w.get('[data-testid="snap-pin"]').text()).toBe('Unpin')
    w.unmount()
  })

  it('Run now opens a queued run, and warns without opening a run the overlap policy rejected', async () => {
    let answer = { run_id: 'r7', status: 'rejected' }
    const runs: unknown[] = []
    mockFetch({
      'GET /api/jobs/j1': { body: { ...job, overlap_policy: 'reject' } },
      'GET /api/jobs/j1/runs': () => ({ body: runs }),
      'GET /api/jobs/j1/snapshots': { body: { items: [], next_cursor: null } },
      'POST /api/jobs/j1/run': () => {
        runs.unshift({ id: answer.run_id, status: answer.status, started_at: NOW, ended_at: answer.status === 'rejected' ? NOW : null, error: answer.status === 'rejected' ? 'overlap_rejected' : null })
        return { body: answer }
      },
    })
    const w = await render(JobDetailView, { id: 'j1' })
    const router = w.vm.$router
    const messages = () => [...document.querySelectorAll('.n-message')]
    await w.get('[data-testid="run-now"]').trigger('click')
    await flushPromises()
    const last = messages().at(-1)!
    expect(last.textContent).toContain('A run is already in progress; this one was rejected.')
    expect(last.className).toContain('warning')
    expect(router.currentRoute.value.path).toBe('/')
    expect(w.findAll('[data-testid="run-link"]')).toHaveLength(1) // the rejected run shows in the list

    answer = { run_id: 'r8', status: 'queued' }
    await w.get('[data-testid="run-now"]').trigger('click')
    await flushPromises()
    expect(router.currentRoute.value.path).toBe('/runs/r8')
    w.unmount()
  })

  it('job detail refreshes snapshots during a run without dropping the pages "More" loaded', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] }) // the page polls every 3 s while a run is active
    const snap = (n: number, status = 'present') => ({ ...snapshot, run_id: `snap000${n}`, ended_at: n * 100, pinned_at: null, status })
    let first = { items: [snap(4), snap(3)], next_cursor: 'after-3' }
    const pages: Record<string, unknown> = { 'after-3': { items: [snap(2), snap(1)], next_cursor: 'after-1' }, 'after-1': { items: [snap(0)], next_cursor: null } }
    const calls = mockFetch({
      'GET /api/jobs/j1': { body: job },
      'GET /api/jobs/j1/runs': { body: [{ id: 'r9', status: 'running', started_at: NOW - 5, ended_at: null, error: null }] },
      'GET /api/jobs/j1/snapshots': (c) => ({ body: pages[new URL(c.url, 'http://x').searchParams.get('cursor') ?? ''] ?? first }),
    })
    const w = await render(JobDetailView, { id: 'j1' })
    const shown = () => w.findAll('[data-testid="snapshots-table"] a.mono').map((a) => a.text())
    const more = () => w.findAll('button').find((b) => b.text() === 'Load more')
    await more()!.trigger('click')
    await flushPromises()
    expect(shown()).toEqual(['snap0004', 'snap0003', 'snap0002', 'snap0001'])

    // The run finishes and its snapshot tops the list; the first page now ends one row earlier.
    first = { items: [snap(5), snap(4, 'deleting')], next_cursor: 'after-4' }
    await vi.advanceTimersByTimeAsync(3000)
    await flushPromises()
    expect(shown()).toEqual(['snap0005', 'snap0004', 'snap0003', 'snap0002', 'snap0001'])
    expect(w.findAll('[data-testid="snap-delete"]')[1]!.attributes('disabled')).toBeDefined() // snap0004 is deleting now
    // "More" still continues after the last row loaded, not after the refreshed first page.
    await more()!.trigger('click')
    await flushPromises()
    expect(calls.filter((c) => c.url.includes('/snapshots')).at(-1)!.url).toContain('cursor=after-1')
    expect(shown()).toEqual(['snap0005', 'snap0004', 'snap0003', 'snap0002', 'snap0001', 'snap0000'])
    expect(more()).toBeUndefined()
    w.unmount()
  })

  it('run detail shows progress and appends streamed events in order', async () => {
    mockFetch({ 'GET /api/runs/r1': { body: run } })
    const w = await render(RunDetailView, { id: 'r1' })
    expect(w.get('[data-testid="progress-bar"]').attributes('data-percent')).toBe('50')
    expect(w.get('[data-testid="progress-stage"]').text()).toBe('Uploading')
    const ws = FakeWS.last!
    expect(ws.url).toMatch(/\/api\/runs\/r1\/events\/ws\?after=0$/)
    ws.onopen?.({})
    for (const seq of [1, 2, 2]) ws.onmessage?.({ data: JSON.stringify({ run_id: 'r1', seq, ts: NOW, level: 'info', kind: 'upload', message: `m${seq}` }) })
    await flushPromises()
    expect(w.findAll('[data-testid="event-row"]').map((r) => r.attributes('data-seq'))).toEqual(['1', '2'])
    expect(w.find('[data-testid="run-cancel"]').exists()).toBe(true)
    w.unmount()
  })

  it('run detail of a finished run shows the stream ended while the Hub holds the socket open', async () => {
    mockFetch({ 'GET /api/runs/r1': { body: { ...run, status: 'success', ended_at: NOW, progress: null } } })
    const w = await render(RunDetailView, { id: 'r1' })
    FakeWS.last!.onopen?.({})
    await flushPromises()
    expect(w.get('[data-testid="event-state"]').text()).toContain('stream ended')
    w.unmount()
  })

  it('restore wizard sends the picked file, destination and conflict policy', async () => {
    const calls = mockFetch({
      'GET /api/runs/r0': { body: { ...run, id: 'r0', status: 'success', progress: null } },
      'GET /api/runs/r0/entries': { body: { prefix: '', cursor: 0, next_cursor: null, total: 2, entries: [{ name: 'srv', path: 'srv', kind: 'dir', size: 0 }, { name: 'a.txt', path: 'a.txt', kind: 'file', size: 3 }] } },
      'POST /api/runs/r0/restore': { body: { op_id: 'op1' } },
      'GET /api/agents': { body: { items: [], page: 1, page_size: 20, total: 0 } },
    })
    const w = await render(RestoreView, { id: 'r0' })
    await w.get('[data-testid="entry-check-a.txt"]').trigger('click')
    await flushPromises()
    await w.get('[data-testid="restore-next"]').trigger('click')
    await flushPromises()
    await w.get('[data-testid="restore-dir"] input').setValue('/tmp/out')
    await w.get('[data-testid="restore-start"]').trigger('click')
    await flushPromises()
    const post = calls.find((c) => c.method === 'POST')!
    expect(post.body).toEqual({ destination: { type: 'local_fs', node_id: 'hub', directory: '/tmp/out' }, conflict_policy: 'fail', selection: { files: ['a.txt'], dirs: [] } })
    // The Hub refuses entries parameters it does not know: the picker sends only known ones.
    const known = ['prefix', 'cursor', 'limit', 'q', 'kind', 'hide_dotfiles', 'type_sort', 'min_size_bytes', 'max_size_bytes']
    for (const c of calls.filter((c) => c.url.includes('/entries'))) {
      for (const k of new URL(c.url, 'http://x').searchParams.keys()) expect(known).toContain(k)
    }
    // A directory restore asks for no credentials.
    expect(calls.some((c) => c.url.includes('/secrets/'))).toBe(false)
    w.unmount()
  })

  it('restore wizard sends a WebDAV destination written by the chosen node with that node\'s credential', async () => {
    const agent = { id: 'a1', name: 'edge', revoked: false }
    const calls = mockFetch({
      'GET /api/runs/r0': { body: { ...run, id: 'r0', status: 'success', progress: null } },
      'GET /api/runs/r0/entries': { body: { prefix: '', cursor: 0, next_cursor: null, entries: [{ name: 'a.txt', path: 'a.txt', kind: 'file', size: 3 }] } },
      'POST /api/runs/r0/restore': { body: { op_id: 'op1' } },
      'GET /api/agents': { body: { items: [agent], page: 1, page_size: 20, total: 1 } },
      'GET /api/nodes/hub/secrets/webdav': { body: [{ name: 'nas', updated_at: NOW, allowed_origins: ['https://dav.example:443'] }] },
      'GET /api/nodes/a1/secrets/webdav': { body: [{ name: 'edge-nas', updated_at: NOW, allowed_origins: [] }] },
    })
    const w = await render(RestoreView, { id: 'r0' })
    await w.get('[data-testid="restore-whole"]').trigger('click')
    await w.get('[data-testid="restore-next"]').trigger('click')
    await flushPromises()
    await w.get('[data-testid="restore-dest-webdav"] input').setValue(true)
    await flushPromises()
    expect(w.find('[data-testid="restore-dir"]').exists()).toBe(false)
    expect(w.get('[data-testid="restore-dav-note"]').text()).toContain('.bastion-meta/')
    expect(w.find('[data-testid="restore-keep-special-bits"]').exists()).toBe(false)
    expect(calls.some((c) => c.method === 'GET' && c.url === '/api/nodes/hub/secrets/webdav')).toBe(true)
    // Nothing can start before the server and the credential are given.
    expect(w.get('[data-testid="restore-start"]').attributes('disabled')).toBeDefined()

    const vm = w.findComponent(RestoreView).vm as unknown as { davSecretOptions: { value: string }[] }
    expect(vm.davSecretOptions.map((o) => o.value)).toEqual(['nas'])
    await w.get('[data-testid="restore-dav-url"] input').setValue('https://dav.example/restores')
    await w.get('[data-testid="restore-dav-prefix"] input').setValue('  2026/run-1 ')
    ;(w.findComponent(RestoreView).vm as unknown as { davSecret: string }).davSecret = 'nas'
    await flushPromises()
    await w.get('[data-testid="restore-start"]').trigger('click')
    await flushPromises()
    const posts = () => calls.filter((c) => c.method === 'POST')
    expect(posts()[0].body).toEqual({
      destination: { type: 'webdav', base_url: 'https://dav.example/restores', secret_name: 'nas', prefix: '2026/run-1' },
      conflict_policy: 'fail',
    })

    // On an agent: its own credentials are offered, the one picked for the Hub is forgotten, and
    // the agent is named as the executor.
    ;(w.findComponent(RestoreView).vm as unknown as { node: string }).node = 'a1'
    await flushPromises()
    expect(calls.some((c) => c.url === '/api/nodes/a1/secrets/webdav')).toBe(true)
    expect(vm.davSecretOptions.map((o) => o.value)).toEqual(['edge-nas'])
    expect(w.get('[data-testid="restore-start"]').attributes('disabled')).toBeDefined()
    ;(w.findComponent(RestoreView).vm as unknown as { davSecret: string }).davSecret = 'edge-nas'
    await flushPromises()
    await w.get('[data-testid="restore-start"]').trigger('click')
    await flushPromises()
    expect(posts()[1].body).toEqual({
      destination: { type: 'webdav', base_url: 'https://dav.example/restores', secret_name: 'edge-nas', prefix: '2026/run-1' },
      executor: { node_id: 'a1' },
      conflict_policy: 'fail',
    })
    w.unmount()
  })

  it('restore wizard sends keep_special_bits only when the box is checked, with a warning', async () => {
    const calls = mockFetch({
      'GET /api/runs/r0': { body: { ...run, id: 'r0', status: 'success', progress: null } },
      'GET /api/runs/r0/entries': { body: { prefix: '', cursor: 0, next_cursor: null, entries: [{ name: 'a.txt', path: 'a.txt', kind: 'file', size: 3 }] } },
      'POST /api/runs/r0/restore': { body: { op_id: 'op1' } },
      'GET /api/agents': { body: { items: [], page: 1, page_size: 20, total: 0 } },
    })
    const w = await render(RestoreView, { id: 'r0' })
    await w.get('[data-testid="restore-whole"]').trigger('click')
    await w.get('[data-testid="restore-next"]').trigger('click')
    await flushPromises()
    await w.get('[data-testid="restore-dir"] input').setValue('/tmp/out')
    expect(w.find('[data-testid="restore-keep-special-bits-warning"]').exists()).toBe(false)
    await w.get('[data-testid="restore-start"]').trigger('click')
    await flushPromises()
    const posts = () => calls.filter((c) => c.method === 'POST')
    expect(posts()[0].body).not.toHaveProperty('keep_special_bits')

    await w.get('[data-testid="restore-advanced"] .n-collapse-item__header-main').trigger('click') // folded by default
    await w.get('[data-testid="restore-keep-special-bits"]').trigger('click')
    expect(w.get('[data-testid="restore-keep-special-bits-warning"]').text()).toContain('root-owned set-id program')
    await w.get('[data-testid="restore-start"]').trigger('click')
    await flushPromises()
    expect(posts()[1].body).toEqual({ destination: { type: 'local_fs', node_id: 'hub', directory: '/tmp/out' }, conflict_policy: 'fail', keep_special_bits: true })

    await w.get('[data-testid="restore-keep-special-bits"]').trigger('click') // unchecked again
    await w.get('[data-testid="restore-start"]').trigger('click')
    await flushPromises()
    expect(posts()[2].body).not.toHaveProperty('keep_special_bits')
    w.unmount()
  })

  it('says why the node list is incomplete when the agents cannot be loaded, on every page that lists them', async () => {
    const broken = { status: 500, body: { error: 'internal_error', message: 'agents table locked', request_id: 'rq-agents' } }
    mockFetch({
      'GET /api/runs/r0': { body: { ...run, id: 'r0', status: 'success', progress: null } },
      'GET /api/runs/r0/entries': { body: { prefix: '', cursor: 0, next_cursor: null, entries: [{ name: 'a.txt', path: 'a.txt', kind: 'file', size: 3 }] } },
      'GET /api/jobs': { body: { items: [job], page: 1, page_size: 20, total: 1 } },
      'GET /api/agents': broken,
    })
    const restore = await render(RestoreView, { id: 'r0' })
    await restore.get('[data-testid="entry-check-a.txt"]').trigger('click')
    await restore.get('[data-testid="restore-next"]').trigger('click')
    await flushPromises()
    expect(restore.get('[data-testid="error-alert"]').text()).toContain('Could not load the agents')
    expect(restore.get('[data-testid="error-alert"]').text()).toContain('agents table locked')
    expect(restore.get('[data-testid="request-id"]').text()).toBe('rq-agents')
    restore.unmount()

    const jobs = await render(JobsView)
    expect(jobs.get('[data-testid="job-link"]').text()).toBe('nightly-web') // the list itself still shows
    expect(jobs.get('[data-testid="error-alert"]').text()).toContain('Could not load the agents')
    expect(jobs.get('[data-testid="request-id"]').text()).toBe('rq-agents')
    jobs.unmount()
  })

  it('Sync now reports what the Hub did with the configuration', async () => {
    let outcome = 'sent'
    mockFetch({
      'GET /api/agents': { body: { items: [{ id: 'a1', name: 'web-01', revoked: false, online: true, last_seen_at: NOW, labels: [], config_sync_status: 'synced' }], page: 1, page_size: 20, total: 1 } },
      'POST /api/agents/a1/sync-config-now': () => ({ body: { outcome } }),
    })
    const w = await render(AgentsView)
    const messages = () => [...document.querySelectorAll('.n-message')].map((m) => m.textContent ?? '')
    for (const [o, text] of [
      ['sent', 'Configuration sent to the agent'],
      ['unchanged', 'The agent already has the current configuration'],
      ['pending_offline', 'The agent is offline: it gets the configuration when it reconnects'],
    ] as const) {
      outcome = o
      await w.get('[data-testid="agent-sync"]').trigger('click')
      await flushPromises()
      expect(messages().at(-1)).toContain(text)
    }
    // offline is a warning, not a success
    expect([...document.querySelectorAll('.n-message')].at(-1)!.className).toContain('warning')
    w.unmount()
  })

  it('operation page shows status and events', async () => {
    mockFetch({
      'GET /api/operations/op1': { body: { id: 'op1', kind: 'restore', status: 'success', started_at: NOW - 5, ended_at: NOW, error: null, summary: { conflict_policy: 'fail' } } },
      'GET /api/operations/op1/events': { body: [{ op_id: 'op1', seq: 1, ts: NOW, level: 'info', kind: 'restore', message: 'done' }] },
    })
    const w = await render(OperationView, { id: 'op1' })
    expect(w.get('[data-testid="operation-status"]').attributes('data-status')).toBe('success')
    expect(w.findAll('[data-testid="event-row"]')).toHaveLength(1)
    w.unmount()
  })

  it('operation page stops polling on a 4xx and shows why', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] }) // the page polls each second while the operation runs
    const calls = mockFetch({
      'GET /api/operations/op1': { status: 404, body: { error: 'operation_not_found', message: 'no such operation', request_id: 'rq-op' } },
    })
    const w = await render(OperationView, { id: 'op1' })
    await vi.advanceTimersByTimeAsync(60_000)
    await flushPromises()
    expect(calls.filter((c) => c.url === '/api/operations/op1')).toHaveLength(1)
    expect(w.get('[data-testid="error-alert"]').text()).toContain('no such operation')
    expect(w.get('[data-testid="request-id"]').text()).toBe('rq-op')
    w.unmount()
  })

  it('operation page backs off while the Hub is unreachable, failing or busy, and resumes once it answers', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const answers = [
      { status: 503, body: { error: 'unavailable', message: 'database is locked', request_id: 'rq-503' } },
      { status: 429, body: { error: 'too_many_requests', message: 'slow down' } }, // may pass later: not final like other 4xx
      { body: { id: 'op1', kind: 'restore', status: 'running', started_at: NOW - 5, ended_at: null, error: null } },
      { body: { id: 'op1', kind: 'restore', status: 'success', started_at: NOW - 5, ended_at: NOW, error: null } },
    ]
    const calls = mockFetch({
      'GET /api/operations/op1': () => answers.shift()!,
      'GET /api/operations/op1/events': { body: [] },
    })
    // The first request does not even reach the Hub.
    const answer = globalThis.fetch
    let offline = true
    vi.stubGlobal('fetch', (input: RequestInfo | URL, init?: RequestInit) => {
      if (!offline) return answer(input, init)
      offline = false
      return Promise.reject(new TypeError('Failed to fetch'))
    })
    const gets = () => 1 + calls.filter((c) => c.url === '/api/operations/op1').length // + the offline one
    const step = async (ms: number) => {
      await vi.advanceTimersByTimeAsync(ms)
      await flushPromises()
    }
    const w = await render(OperationView, { id: 'op1' })
    expect(gets()).toBe(1)
    expect(w.get('[data-testid="error-alert"]').text()).toContain('Failed to fetch')
    // Each failure doubles the wait: 2 s, then 4 s, then 8 s.
    await step(1999)
    expect(gets()).toBe(1)
    await step(1)
    expect(gets()).toBe(2)
    expect(w.get('[data-testid="request-id"]').text()).toBe('rq-503')
    await step(3999)
    expect(gets()).toBe(2)
    await step(1)
    expect(gets()).toBe(3)
    await step(7999)
    expect(gets()).toBe(3)
    await step(1)
    expect(gets()).toBe(4)
    // Answered: the error goes away and polling is back to once a second, until the operation ends.
    expect(w.find('[data-testid="error-alert"]').exists()).toBe(false)
    expect(w.get('[data-testid="operation-status"]').attributes('data-status')).toBe('running')
    await step(1000)
    expect(gets()).toBe(5)
    expect(w.get('[data-testid="operation-status"]').attributes('data-status')).toBe('success')
    await step(60_000)
    expect(gets()).toBe(5)
    w.unmount()
  })

  it('operation page stops polling when left, even with a request in flight', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const calls = mockFetch({
      'GET /api/operations/op1': { body: { id: 'op1', kind: 'verify', status: 'running', started_at: NOW - 5, ended_at: null, error: null } },
      'GET /api/operations/op1/events': { body: [] },
    })
    const w = await render(OperationView, { id: 'op1' })
    vi.advanceTimersByTime(1000) // the second poll starts…
    w.unmount() // …and the user leaves before it is answered
    await flushPromises()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(calls.filter((c) => c.url === '/api/operations/op1')).toHaveLength(2)
  })

  it('agents page lists agents and builds the enroll command from a new token', async () => {
    mockFetch({
      'GET /api/agents': { body: { items: [{ id: 'a1', name: 'web-01', revoked: false, online: true, last_seen_at: NOW, labels: ['prod'], config_sync_status: 'synced' }], page: 1, page_size: 20, total: 1 } },
      'POST /api/agents/enrollment-tokens': { body: { token: 'TOKEN123', expires_at: NOW + 3600, remaining_uses: 1 } },
    })
    const w = await render(AgentsView)
    expect(w.get('[data-testid="agent-name"]').text()).toBe('web-01')
    await w.get('[data-testid="agent-enroll"]').trigger('click')
    await flushPromises()
    const name = document.querySelector('[data-testid="enroll-name"] input') as HTMLInputElement
    name.value = 'db-01'
    name.dispatchEvent(new Event('input'))
    ;(document.querySelector('[data-testid="enroll-create"]') as HTMLElement).click()
    await flushPromises()
    expect(document.querySelector('[data-testid="enroll-command"]')!.textContent).toBe(
      `bastion agent --hub-url ${window.location.origin} --enroll-token TOKEN123 --name db-01`,
    )
    w.unmount()
  })

  it('agents page manages an agent’s own WebDAV and S3 credentials, never the Hub’s', async () => {
    const stored = [{ name: 'agent-nas', updated_at: NOW }]
    const storedS3: { name: string; updated_at: number; allowed_origins?: string[] }[] = []
    const calls = mockFetch({
      'GET /api/agents': { body: { items: [{ id: 'a1', name: 'web-01', revoked: false, online: true, last_seen_at: NOW, labels: [], config_sync_status: 'synced' }], page: 1, page_size: 20, total: 1 } },
      'GET /api/nodes/a1/secrets/webdav': () => ({ body: stored }),
      'PUT /api/nodes/a1/secrets/webdav/offsite': (c) => {
        stored.push({ name: 'offsite', updated_at: NOW })
        return { status: 204, body: c.body }
      },
      'GET /api/nodes/a1/secrets/s3': () => ({ body: storedS3 }),
      'PUT /api/nodes/a1/secrets/s3/bucket-key': (c) => {
        storedS3.push({ name: 'bucket-key', updated_at: NOW, allowed_origins: ['https://s3.example'] })
        return { status: 204, body: c.body }
      },
    })
    const w = await render(AgentsView)
    await w.get('[data-testid="agent-credentials"]').trigger('click')
    await flushPromises()
    const modal = () => document.querySelector('[data-testid="agent-credentials-modal"]')!
    expect(modal().textContent).toContain('Target credentials of web-01')
    expect(modal().textContent).toContain('agent-nas')
    ;(modal().querySelector('[data-testid="secret-add-webdav"]') as HTMLElement).click()
    await flushPromises()
    for (const [id, v] of [['secret-name', 'offsite'], ['secret-username', 'u'], ['secret-password', 'p']]) {
      const input = document.querySelector(`[data-testid="${id}"] input`) as HTMLInputElement
      input.value = v!
      input.dispatchEvent(new Event('input'))
    }
    // The server the credential is for: the Hub sends it nowhere else.
    const origins = document.querySelector('[data-testid="secret-origins"] textarea') as HTMLTextAreaElement
    origins.value = 'https://dav.example.com/remote.php/dav\nhttp://nas.lan:8080'
    origins.dispatchEvent(new Event('input'))
    await flushPromises()
    ;(document.querySelector('[data-testid="secret-save"]') as HTMLElement).click()
    await flushPromises()
    const put = calls.find((c) => c.method === 'PUT')!
    expect(put.url).toBe('/api/nodes/a1/secrets/webdav/offsite')
    expect(put.body).toEqual({ username: 'u', password: 'p', allowed_origins: ['https://dav.example.com/remote.php/dav', 'http://nas.lan:8080'] })
    expect(calls.some((c) => c.url.startsWith('/api/secrets/'))).toBe(false)
    expect(modal().textContent).toContain('offsite')

    // The S3 tab: an access key pair, bound to the endpoint it is for.
    ;(modal().querySelector('.n-tabs-tab[data-name="s3"]') as HTMLElement).click()
    await flushPromises()
    ;(modal().querySelector('[data-testid="secret-add-s3"]') as HTMLElement).click()
    await flushPromises()
    for (const [id, v] of [['secret-name', 'bucket-key'], ['secret-access-key-id', 'AKIA1'], ['secret-secret-access-key', 'sk']]) {
      const input = document.querySelector(`[data-testid="${id}"] input`) as HTMLInputElement
      input.value = v!
      input.dispatchEvent(new Event('input'))
    }
    const s3Origins = document.querySelector('[data-testid="secret-origins"] textarea') as HTMLTextAreaElement
    s3Origins.value = 'https://s3.example'
    s3Origins.dispatchEvent(new Event('input'))
    await flushPromises()
    ;(document.querySelector('[data-testid="secret-save"]') as HTMLElement).click()
    await flushPromises()
    const putS3 = calls.filter((c) => c.method === 'PUT').at(-1)!
    expect(putS3.url).toBe('/api/nodes/a1/secrets/s3/bucket-key')
    expect(putS3.body).toEqual({ access_key_id: 'AKIA1', secret_access_key: 'sk', allowed_origins: ['https://s3.example'] })
    expect(calls.some((c) => c.url.startsWith('/api/secrets/'))).toBe(false)
    expect(modal().textContent).toContain('bucket-key')
    w.unmount()
  })

  it('notifications page shows destinations and the receiver’s answer to a test', async () => {
    mockFetch({
      'GET /api/notifications/destinations': { body: [{ channel: 'webhook', name: 'ops', enabled: true, updated_at: 1 }] },
      'GET /api/notifications/queue': { body: { items: [], page: 1, page_size: 20, total: 0, next_cursor: null } },
      'GET /api/notifications/settings': { body: { enabled: true, channels: { wecom_bot: { enabled: true }, email: { enabled: true }, webhook: { enabled: true } }, templates: { wecom_markdown: '**{{title}}**', email_subject: 'S {{job_name}}', email_body: 'B' } } },
      'POST /api/notifications/destinations/webhook/ops/test': { status: 502, body: { error: 'notification_test_failed', message: 'webhook http 500: boom', request_id: 'rq7' } },
    })
    const w = await render(NotificationsView)
    await w.get('[data-testid="dest-test"]').trigger('click')
    await flushPromises()
    expect(w.get('[data-testid="dest-test-result"]').text()).toBe('webhook http 500: boom (request ID rq7)')
    w.unmount()
  })

  it('settings page shows hub information and credential names only', async () => {
    mockFetch({
      'GET /api/system': { body: { version: '1.2.3', insecure_http: false, hub_timezone: 'Asia/Shanghai' } },
      'GET /api/secrets/webdav': { body: [{ name: 'nas', updated_at: NOW }] },
    })
    const w = await render(SettingsView)
    expect(w.get('[data-testid="settings-version"]').text()).toBe('1.2.3')
    expect(w.get('[data-testid="settings-timezone"]').text()).toBe('Asia/Shanghai')
    expect(w.text()).toContain('nas')
    w.unmount()
  })

  it('settings page lists sessions, revokes one and signs out when revoking its own', async () => {
    const sessions = [
      { id: 'pub-cur', created_at: NOW - 60, expires_at: NOW + 86400, last_seen_at: NOW, client_ip: '192.0.2.7', user_agent: 'Firefox on Linux', current: true },
      { id: 'pub-old', created_at: NOW - 7200, expires_at: NOW + 3600, last_seen_at: NOW - 3600, client_ip: '198.51.100.9', user_agent: '', current: false },
    ]
    const calls = mockFetch({
      'GET /api/system': { body: { version: '1.2.3', insecure_http: false, hub_timezone: 'UTC' } },
      'GET /api/secrets/webdav': { body: [] },
      'GET /api/sessions': () => ({ body: { items: sessions, max_sessions: 10 } }),
      'DELETE /api/sessions/pub-old': () => {
        sessions.splice(1, 1)
        return { status: 204 }
      },
      'DELETE /api/sessions/pub-cur': { status: 204 },
    })
    const { useSessionStore } = await import('@/stores/session')
    const store = useSessionStore()
    store.state = 'authenticated'
    const w = await render(SettingsView)
    const panel = w.get('[data-testid="sessions-panel"]')
    expect(panel.text()).toContain('Firefox on Linux')
    expect(panel.text()).toContain('Unknown browser')
    expect(panel.text()).toContain('198.51.100.9')
    expect(panel.findAll('[data-testid="session-current"]')).toHaveLength(1)
    const confirmDialog = async () => {
      await flushPromises()
      const buttons = [...document.body.querySelectorAll('.n-dialog .n-button')] as HTMLElement[]
      const yes = buttons.reverse().find((b) => /Revoke/.test(b.textContent ?? '')) // the newest dialog
      expect(yes).toBeTruthy()
      yes!.click()
      await flushPromises()
    }
    await panel.findAll('[data-testid="session-revoke"]')[1].trigger('click')
    await confirmDialog()
    expect(calls.some((c) => c.method === 'DELETE' && c.url.endsWith('/api/sessions/pub-old'))).toBe(true)
    expect(w.findAll('[data-testid="session-revoke"]')).toHaveLength(1)
    expect(store.state).toBe('authenticated')
    await w.get('[data-testid="session-revoke"]').trigger('click')
    await confirmDialog()
    expect(calls.some((c) => c.method === 'DELETE' && c.url.endsWith('/api/sessions/pub-cur'))).toBe(true)
    expect(store.state).toBe('anonymous')
    w.unmount()
  })

  it('settings page shows an empty sessions state', async () => {
    mockFetch({
      'GET /api/system': { body: { version: '1.2.3', insecure_http: false, hub_timezone: 'UTC' } },
      'GET /api/secrets/webdav': { body: [] },
      'GET /api/sessions': { body: { items: [], max_sessions: 10 } },
    })
    const w = await render(SettingsView)
    expect(w.get('[data-testid="sessions-panel"]').text()).toContain('No active sessions.')
    w.unmount()
  })

  it('jobs and dashboard pages render their lists', async () => {
    mockFetch({
      'GET /api/jobs': { body: { items: [{ ...job, latest_run_status: 'failed', latest_run_started_at: NOW }], page: 1, page_size: 20, total: 1 } },
      'GET /api/agents': { body: { items: [], page: 1, page_size: 20, total: 0 } },
      'GET /api/dashboard/overview': {
        body: {
          timezone: 'UTC', generated_at: NOW, jobs_total: 1,
          days: [{ day: '2026-03-10', start: NOW - 3600, success: 0, failed: 1, bytes: 0 }],
          recent_runs: [{ id: 'r9', job_id: 'j1', job_name: 'nightly-web', status: 'failed', started_at: NOW - 50, ended_at: NOW - 40, error: 'run_failed' }],
          agents: { online: 1, offline: 1, revoked: 0, total: 2 },
          attention: {
            failed_runs: [{ id: 'r9', job_id: 'j1', job_name: 'nightly-web', status: 'failed', started_at: NOW - 50, ended_at: NOW - 40, error: 'run_failed' }],
            failed_runs_total: 3,
            failed_notifications: [], failed_notifications_total: 0,
            error_snapshots: [{ run_id: 'r0', job_id: 'j1', job_name: 'nightly-web', node_id: 'hub', target_type: 'local_dir', started_at: 1, ended_at: 2, last_error_kind: null, last_error: 'gone' }],
            error_snapshots_total: 1,
          },
        },
      },
    })
    const jobs = await render(JobsView)
    expect(jobs.get('[data-testid="job-link"]').text()).toBe('nightly-web')
    jobs.unmount()
    // happy-dom has no canvas; the chart component is exercised in the browser journey
    const dash = await render(DashboardView, {}, { RunsChart: true })
    expect(dash.get('[data-testid="attention"]').text()).toContain('Run of nightly-web failed')
    expect(dash.get('[data-testid="recent-runs"]').find('[data-status="failed"]').exists()).toBe(true)
    // the badge counts everything that needs attention; the list says how many it left out
    expect(dash.get('[data-testid="attention-count"]').text()).toBe('4')
    expect(dash.get('[data-testid="attention"]').text()).toContain('…and 2 more')
    expect(dash.get('[data-testid="attention"]').text()).toContain('Snapshot r0 of nightly-web is in error')
    expect(dash.get('[data-testid="agents-summary"]').text()).toContain('1 / 2')
    dash.unmount()
  })
})

describe('login page', () => {
  it('shows the throttling wait the Hub asks for and keeps the button disabled', async () => {
    const { default: LoginView } = await import('@/views/LoginView.vue')
    mockFetch({
      'GET /api/system': { body: { version: 't', insecure_http: false, hub_timezone: 'UTC' } },
      'POST /api/auth/login': {
        status: 429,
        body: { error: 'rate_limited', message: 'Too many failed logins', details: { reason: 'throttled', params: { retry_after_seconds: 120 } }, request_id: 'rq-t' },
      },
    })
    const w = await render(LoginView)
    await w.get('[data-testid="login-username"] input').setValue('admin')
    await w.get('[data-testid="login-password"] input').setValue('wrong')
    await w.get('form').trigger('submit')
    await flushPromises()
    expect(w.get('[data-testid="login-throttled"]').text()).toMatch(/Try again in 1[12]\d s/)
    expect(w.get('[data-testid="request-id"]').text()).toBe('rq-t')
    expect(w.get('[data-testid="login-submit"]').attributes('disabled')).toBeDefined()
    w.unmount()
  })

  it('says so when the credentials are wrong', async () => {
    const { default: LoginView } = await import('@/views/LoginView.vue')
    mockFetch({
      'GET /api/system': { body: { version: 't', insecure_http: false, hub_timezone: 'UTC' } },
      'POST /api/auth/login': { status: 401, body: { error: 'invalid_credentials', message: 'Invalid username or password', request_id: 'rq-c' } },
    })
    const w = await render(LoginView)
    await w.get('[data-testid="login-username"] input').setValue('admin')
    await w.get('[data-testid="login-password"] input').setValue('wrong')
    await w.get('form').trigger('submit')
    await flushPromises()
    expect(w.get('[data-testid="error-alert"]').text()).toContain('Invalid username or password')
    expect(w.find('[data-testid="login-throttled"]').exists()).toBe(false)
    w.unmount()
  })

  it('shows each role only the actions it may take', async () => {
    const answers = {
      'GET /api/jobs/j1': { body: job },
      'GET /api/jobs/j1/runs': { body: [] },
      'GET /api/jobs/j1/snapshots': { body: { items: [snapshot], next_cursor: null } },
    }
    const visible = (w: Awaited<ReturnType<typeof render>>) =>
      ['run-now', 'verify-now', 'job-edit', 'job-delete', 'snap-restore', 'snap-pin', 'snap-delete'].filter((id) => w.find(`[data-testid="${id}"]`).exists())

    signInAs('viewer', 'victor')
    mockFetch(answers)
    let w = await render(JobDetailView, { id: 'j1' })
    expect(visible(w)).toEqual([])
    w.unmount()

    signInAs('operator', 'olga')
    mockFetch(answers)
    w = await render(JobDetailView, { id: 'j1' })
    expect(visible(w)).toEqual(['run-now', 'verify-now', 'snap-restore'])
    w.unmount()

    signInAs('admin')
    mockFetch(answers)
    w = await render(JobDetailView, { id: 'j1' })
    expect(visible(w)).toEqual(['run-now', 'verify-now', 'job-edit', 'job-delete', 'snap-restore', 'snap-pin', 'snap-delete'])
    w.unmount()
  })

  it('settings hides credentials and tokens from an operator, and shows a new token once with a copy button', async () => {
    signInAs('operator', 'olga')
    mockFetch({
      'GET /api/system': { body: { version: 't', insecure_http: false, hub_timezone: 'UTC' } },
      'GET /api/settings/verification': { body: { stale_after_days: 7 } },
      'GET /api/sessions': { body: { items: [], max_sessions: 10 } },
    })
    let w = await render(SettingsView)
    expect(w.find('[data-testid="settings-credentials"]').exists()).toBe(false)
    expect(w.find('[data-testid="tokens-panel"]').exists()).toBe(false)
    expect(w.find('[data-testid="drills-save"]').exists()).toBe(false)
    expect(w.find('[data-testid="password-panel"]').exists()).toBe(true)
    w.unmount()

    signInAs('admin')
    const calls = mockFetch({
      'GET /api/system': { body: { version: 't', insecure_http: false, hub_timezone: 'UTC' } },
      'GET /api/settings/verification': { body: { stale_after_days: 7 } },
      'GET /api/sessions': { body: { items: [], max_sessions: 10 } },
      'GET /api/secrets/webdav': { body: [] },
      'GET /api/tokens': { body: { items: [{ id: 1, name: 'ci', role: 'viewer', created_at: NOW, expires_at: null, last_used_at: NOW - 5, created_by: 'admin', created_by_id: 1, expired: false }] } },
      'POST /api/tokens': { status: 201, body: { id: 2, token: 'bst_secretvalue', name: 'prom', role: 'viewer', created_at: NOW, expires_at: null } },
    })
    w = await render(SettingsView)
    expect(w.find('[data-testid="tokens-panel"]').text()).toContain('ci')
    await w.find('[data-testid="token-new"]').trigger('click')
    await flushPromises()
    const input = document.querySelector('[data-testid="token-name-input"] input') as HTMLInputElement
    input.value = 'prom'
    input.dispatchEvent(new Event('input'))
    await flushPromises()
    ;(document.querySelector('[data-testid="token-create"]') as HTMLButtonElement).click()
    await flushPromises()
    const post = calls.find((c) => c.method === 'POST')!
    expect(post.body).toMatchObject({ name: 'prom', role: 'viewer' })
    expect(document.querySelector('[data-testid="token-value"]')?.textContent).toBe('bst_secretvalue')
    expect(document.querySelector('[data-testid="token-copy"]')).not.toBeNull()
    w.unmount()
  })

  it('users page lists users for an admin and says admins only to others', async () => {
    mockFetch({ 'GET /api/users': { body: { items: [{ id: 1, username: 'admin', role: 'admin', created_at: NOW, updated_at: NOW }, { id: 2, username: 'olga', role: 'operator', created_at: NOW, updated_at: NOW }] } } })
    let w = await render(UsersView)
    expect(w.findAll('[data-testid="user-name"]').map((x) => x.text())).toEqual(['admin', 'olga'])
    w.unmount()
    signInAs('viewer', 'victor')
    mockFetch({})
    w = await render(UsersView)
    expect(w.find('[data-testid="users-forbidden"]').exists()).toBe(true)
    expect(w.find('[data-testid="user-new"]').exists()).toBe(false)
    w.unmount()
  })
})

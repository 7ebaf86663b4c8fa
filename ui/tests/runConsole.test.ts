// The run event console pages through a run's events with the Hub's cursors and filters.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { i18n } from '@/i18n'
import { mockFetch, type Call } from './fetchMock'
import { mountView } from './mountView'
import RunConsoleView from '@/views/RunConsoleView.vue'
import { useSessionStore } from '@/stores/session'

const summary = { total: 250, max_seq: 250, by_level: { info: 240, error: 10 }, kinds: ['log', 'progress'] }
const ev = (seq: number, level = 'info') => ({ run_id: 'r1', seq, ts: 1700000000 + seq, level, kind: 'log', message: `event ${seq}`, fields: null })
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ev(from + i))

function page(call: Call) {
  const q = new URL(call.url, 'http://x').searchParams
  const before = Number(q.get('before_seq') ?? 0)
  const after = Number(q.get('after_seq') ?? 0)
  if (q.get('levels') === 'error') {
    return { body: { run_id: 'r1', events: [ev(7, 'error'), ev(9, 'error')], first_seq: 7, last_seq: 9, has_older: false, has_newer: false, limit: 100, filters: { levels: ['error'], kinds: [] }, summary } }
  }
  const events = before ? range(Math.max(1, before - 100), before - 1) : after ? [] : range(151, 250)
  return {
    body: {
      run_id: 'r1', events, first_seq: events[0]?.seq ?? null, last_seq: events.at(-1)?.seq ?? null,
      has_older: events.length > 0 && events[0].seq > 1, has_newer: false, limit: 100, filters: { levels: [], kinds: [] }, summary,
    },
  }
}

beforeEach(() => {
  setActivePinia(createPinia())
  const session = useSessionStore()
  session.state = 'authenticated'
  session.role = 'viewer'
  session.username = 'watcher'
  i18n.global.locale.value = 'en'
})
afterEach(() => vi.unstubAllGlobals())

async function render() {
  return (await mountView(RunConsoleView, { id: 'r1' })).w
}

describe('run event console', () => {
  it('opens on the newest page, loads older pages before it, and asks for newer ones after it', async () => {
    const calls = mockFetch({ 'GET /api/runs/r1/event-console': page })
    const w = await render()
    let rows = w.findAll('[data-testid=console-row]')
    expect(rows).toHaveLength(100)
    expect(rows[0].attributes('data-seq')).toBe('151')
    expect(w.get('[data-testid=console-count]').text()).toContain('100 shown of 250')

    await w.get('[data-testid=console-older]').trigger('click')
    await flushPromises()
    expect(calls.at(-1)!.url).toContain('before_seq=151')
    rows = w.findAll('[data-testid=console-row]')
    expect(rows).toHaveLength(200)
    expect(rows[0].attributes('data-seq')).toBe('51')
    expect(rows.at(-1)!.attributes('data-seq')).toBe('250')

    await w.get('[data-testid=console-newer]').trigger('click')
    await flushPromises()
    expect(calls.at(-1)!.url).toContain('after_seq=250')
    expect(w.findAll('[data-testid=console-row]')).toHaveLength(200)
    w.unmount()
  })

  it('filters by level on the Hub and says when nothing matches (Chinese too)', async () => {
    const calls = mockFetch({ 'GET /api/runs/r1/event-console': page })
    const w = await render()
    const select = w.findComponent({ name: 'Select' })
    select.vm.$emit('update:value', ['error'])
    await flushPromises()
    expect(calls.at(-1)!.url).toContain('levels=error')
    const rows = w.findAll('[data-testid=console-row]')
    expect(rows.map((r) => r.attributes('data-seq'))).toEqual(['7', '9'])
    expect(rows[0].classes()).toContain('lvl-error')
    w.unmount()

    i18n.global.locale.value = 'zh-CN'
    mockFetch({ 'GET /api/runs/r1/event-console': { body: { run_id: 'r1', events: [], first_seq: null, last_seq: null, has_older: false, has_newer: false, limit: 100, filters: { levels: [], kinds: [] }, summary: { total: 0, max_seq: 0, by_level: {}, kinds: [] } } } })
    const w2 = await render()
    expect(w2.get('[data-testid=console-log]').text()).toContain('没有符合筛选条件的事件')
    w2.unmount()
  })
})

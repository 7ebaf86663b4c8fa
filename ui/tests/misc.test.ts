import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { enrollCommand } from '@/lib/enroll'
import { renderTemplate, unknownPlaceholders } from '@/lib/templates'
import { joinUrl, parentPath } from '@/lib/paths'
import { formatBytes, formatDuration, isTerminal } from '@/lib/format'
import { useJobsStore } from '@/stores/jobs'
import { i18n } from '@/i18n'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

describe('enroll command', () => {
  it('is exactly the agent invocation, quoting only what the shell needs', () => {
    expect(enrollCommand('http://10.0.0.5:9876/', 'AbC-_123', 'web-01')).toBe('bastion agent --hub-url http://10.0.0.5:9876 --enroll-token AbC-_123 --name web-01')
    expect(enrollCommand('https://hub.example', 'tok', "bob's box")).toBe(`bastion agent --hub-url https://hub.example --enroll-token tok --name 'bob'\\''s box'`)
    expect(enrollCommand('https://hub.example', 'tok', '  ')).toBe('bastion agent --hub-url https://hub.example --enroll-token tok')
  })
})

describe('template preview', () => {
  it('replaces placeholders by plain substitution and flags unknown ones', () => {
    expect(renderTemplate('**{{title}}** {{job_name}} {{job_name}}', { title: 'T', job_name: 'J' })).toBe('**T** J J')
    expect(renderTemplate('{{nope}}', { title: 'T' })).toBe('{{nope}}')
    expect(unknownPlaceholders('{{title}} {{tilte}} {{ job_nme }}')).toEqual(['tilte', 'job_nme'])
  })
})

describe('helpers', () => {
  it('joins WebDAV folders and walks paths up', () => {
    expect(joinUrl('https://dav/x/', '/a/b/')).toBe('https://dav/x/a/b')
    expect(joinUrl('https://dav/x', '/')).toBe('https://dav/x')
    expect(parentPath('/srv/data/')).toBe('/srv')
    expect(parentPath('/srv')).toBe('/')
    expect(parentPath('a/b', '')).toBe('a')
    expect(parentPath('a', '')).toBe('')
  })
  it('formats sizes and durations', () => {
    expect(formatBytes(0)).toBe('0 B')
    expect(formatBytes(1536)).toBe('1.50 KiB')
    expect(formatBytes(256 * 1024 * 1024)).toBe('256 MiB')
    expect(formatBytes(undefined)).toBe('-')
    expect(isTerminal('running')).toBe(false)
    expect(isTerminal('rejected')).toBe(true)
  })
  it('formats durations in the chosen language', () => {
    const t = (key: string, named: Record<string, unknown>) => i18n.global.t(key, named)
    i18n.global.locale.value = 'en'
    expect(formatDuration(3725, t)).toBe('1h 2m')
    expect(formatDuration(61, t)).toBe('1m 1s')
    expect(formatDuration(59.6, t)).toBe('1m 0s')
    expect(formatDuration(7, t)).toBe('7s')
    expect(formatDuration(null, t)).toBe('-')
    i18n.global.locale.value = 'zh-CN'
    expect(formatDuration(3725, t)).toBe('1 小时 2 分')
    expect(formatDuration(61, t)).toBe('1 分 1 秒')
    expect(formatDuration(7, t)).toBe('7 秒')
    i18n.global.locale.value = 'en'
  })
})

describe('jobs store', () => {
  it('sends the filters as query parameters, leaving out the defaults', async () => {
    const urls: string[] = []
    vi.stubGlobal('fetch', vi.fn(async (u: string) => {
      urls.push(u)
      return new Response(JSON.stringify({ items: [], page: 1, page_size: 20, total: 0 }), { status: 200 })
    }))
    const s = useJobsStore()
    await s.load()
    s.filters.q = ' web '
    s.filters.latest_status = 'failed'
    s.filters.schedule_mode = 'scheduled'
    s.filters.include_archived = true
    s.filters.sort = 'name_asc'
    s.page = 2
    await s.load()
    expect(urls[0]).toBe('/api/jobs?sort=updated_desc&page=1&page_size=20')
    expect(urls[1]).toBe('/api/jobs?q=web&latest_status=failed&schedule_mode=scheduled&sort=name_asc&include_archived=true&page=2&page_size=20')
  })

  it('ignores an older answer that arrives after a newer one', async () => {
    const resolvers: ((r: Response) => void)[] = []
    vi.stubGlobal('fetch', vi.fn(() => new Promise<Response>((r) => resolvers.push(r))))
    const s = useJobsStore()
    const first = s.load()
    const second = s.load()
    const page = (name: string) => new Response(JSON.stringify({ items: [{ id: name, name }], page: 1, page_size: 20, total: 1 }), { status: 200 })
    resolvers[1]!(page('new'))
    await second
    resolvers[0]!(page('old'))
    await first
    expect(s.items.map((j) => j.id)).toEqual(['new'])
    expect(s.loading).toBe(false)
  })
})

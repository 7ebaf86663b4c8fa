import { beforeEach, afterEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { can } from '@/lib/permissions'
import { useSessionStore } from '@/stores/session'
import { mockFetch } from './fetchMock'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

describe('can', () => {
  it('orders the roles', () => {
    expect(can('admin', 'users.manage')).toBe(true)
    expect(can('operator', 'users.manage')).toBe(false)
    expect(can('operator', 'jobs.run')).toBe(true)
    expect(can('operator', 'runs.restore')).toBe(true)
    expect(can('operator', 'jobs.edit')).toBe(false)
    expect(can('operator', 'secrets.manage')).toBe(false)
    expect(can('viewer', 'jobs.run')).toBe(false)
    expect(can('viewer', 'runs.cancel')).toBe(false)
    expect(can(null, 'jobs.run')).toBe(false)
    expect(can('root' as never, 'jobs.run')).toBe(false)
  })

  it('follows the role of the session, and forgets it on logout', async () => {
    mockFetch({
      'GET /api/setup/status': { body: { needs_setup: false } },
      'GET /api/session': { body: { authenticated: true, csrf_token: 'c', username: 'olga', role: 'operator' } },
      'POST /api/auth/logout': { status: 204 },
    })
    const s = useSessionStore()
    await s.refresh()
    expect(s.username).toBe('olga')
    expect(s.can('jobs.run')).toBe(true)
    expect(s.can('jobs.edit')).toBe(false)
    await s.logout()
    expect(s.role).toBeNull()
    expect(s.can('jobs.run')).toBe(false)
  })

  it('takes the role from the login answer', async () => {
    mockFetch({ 'POST /api/auth/login': { body: { csrf_token: 'c', username: 'victor', role: 'viewer', user_id: 3 } } })
    const s = useSessionStore()
    await s.login('victor', 'pw')
    expect(s.can('runs.cancel')).toBe(false)
    expect(s.role).toBe('viewer')
  })
})

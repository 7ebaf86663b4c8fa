import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { isLoopbackHost, transportWarning, useSessionStore } from '@/stores/session'
import { guardTarget } from '@/router'
import { api } from '@/api'
import { mockFetch } from './fetchMock'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

describe('session store', () => {
  it('sends users to setup on first run', async () => {
    mockFetch({ 'GET /api/setup/status': { body: { needs_setup: true } } })
    const s = useSessionStore()
    expect(await s.refresh()).toBe('needs_setup')
  })

  it('keeps the CSRF token from the session and sends it after', async () => {
    const calls = mockFetch({
      'GET /api/setup/status': { body: { needs_setup: false } },
      'GET /api/session': { body: { authenticated: true, csrf_token: 'c1' } },
      'POST /api/auth/logout': { status: 204 },
    })
    const s = useSessionStore()
    expect(await s.refresh()).toBe('authenticated')
    expect(s.csrf).toBe('c1')
    await s.logout()
    expect(calls.at(-1)!.headers['X-CSRF-Token']).toBe('c1')
    expect(s.state).toBe('anonymous')
    expect(s.csrf).toBeNull()
  })

  it('takes the CSRF token from login', async () => {
    const calls = mockFetch({ 'POST /api/auth/login': { body: { csrf_token: 'c2' } }, 'POST /api/jobs/x/run': { body: {} } })
    const s = useSessionStore()
    await s.login('admin', 'pw')
    expect(calls[0]!.body).toEqual({ username: 'admin', password: 'pw' })
    expect(s.authenticated).toBe(true)
    await api.jobs.runNow('x')
    expect(calls[1]!.headers['X-CSRF-Token']).toBe('c2')
  })

  it('drops to anonymous when any call answers 401 unauthorized', async () => {
    mockFetch({ 'POST /api/auth/login': { body: { csrf_token: 'c' } }, 'GET /api/jobs': { status: 401, body: { error: 'unauthorized', message: 'x' } } })
    const s = useSessionStore()
    await s.login('a', 'b')
    await api.jobs.list().catch(() => {})
    expect(s.state).toBe('anonymous')
  })
})

describe('transport banner', () => {
  const sys = (insecure: boolean) => ({ version: 'v', insecure_http: insecure, hub_timezone: 'UTC' })
  it('stays quiet on https and on loopback', () => {
    expect(transportWarning({ protocol: 'https:', hostname: 'backup.example' }, sys(false))).toBeNull()
    for (const h of ['localhost', '127.0.0.1', '127.1.2.3', '[::1]', 'app.localhost']) {
      expect(isLoopbackHost(h)).toBe(true)
      expect(transportWarning({ protocol: 'http:', hostname: h }, sys(true))).toBeNull()
    }
  })
  it('warns on plain http from another address', () => {
    expect(transportWarning({ protocol: 'http:', hostname: '192.168.1.5' }, sys(true))).toBe('insecure_mode')
    expect(transportWarning({ protocol: 'http:', hostname: 'nas.lan' }, sys(false))).toBe('refused')
    expect(transportWarning({ protocol: 'http:', hostname: 'nas.lan' }, null)).toBe('insecure_mode')
  })
})

describe('route guard', () => {
  const to = (name: string, pub = false, fullPath = '/x') => ({ name, fullPath, meta: { public: pub } })
  it('routes by auth state', () => {
    expect(guardTarget('needs_setup', to('dashboard'))).toEqual({ name: 'setup' })
    expect(guardTarget('needs_setup', to('setup', true))).toBeNull()
    expect(guardTarget('anonymous', to('setup', true))).toEqual({ name: 'login' })
    expect(guardTarget('anonymous', to('job', false, '/jobs/1'))).toEqual({ name: 'login', query: { redirect: '/jobs/1' } })
    expect(guardTarget('anonymous', to('login', true))).toBeNull()
    expect(guardTarget('authenticated', to('login', true))).toEqual({ name: 'dashboard' })
    expect(guardTarget('authenticated', to('job'))).toBeNull()
  })
})

// The runtime config page, the About page and the theme store.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import type { Component } from 'vue'
import { i18n } from '@/i18n'
import { mockFetch } from './fetchMock'
import { mountView } from './mountView'
import RuntimeConfigView from '@/views/RuntimeConfigView.vue'
import AboutView from '@/views/AboutView.vue'
import { useSessionStore } from '@/stores/session'
import { parseMode, resolveTheme, THEME_KEY, useThemeStore } from '@/stores/theme'
import type { Role } from '@/api'

function signInAs(role: Role) {
  const s = useSessionStore()
  s.state = 'authenticated'
  s.role = role
  s.username = role
  s.csrf = 'tok'
}

async function render(view: Component) {
  return (await mountView(view)).w
}

const meta = (source: string, extra: Record<string, unknown> = {}) => ({ env: 'BASTION_X', source, editable: source !== 'env' && source !== 'cli',
  overridden: source === 'env' || source === 'cli', requires_restart: true, pending_restart: false, ...extra })
const viewBody = {
  requires_restart: true,
  pending_restart: ['hub_timezone'],
  effective: { hub_timezone: 'UTC', run_retention_days: 90, audit_retention_days: 30, bind_host: '127.0.0.1', trusted_proxies: ['127.0.0.1/32'] },
  saved: { hub_timezone: 'Europe/Berlin', run_retention_days: 90 },
  fields: {
    hub_timezone: meta('default', { pending_restart: true }),
    run_retention_days: meta('db', { requires_restart: false }),
    audit_retention_days: { ...meta('env', { requires_restart: false }), env: 'BASTION_AUDIT_RETENTION_DAYS' },
    bind_host: meta('default', { editable: false }),
  },
}

beforeEach(() => {
  setActivePinia(createPinia())
  i18n.global.locale.value = 'en'
  localStorage.clear()
})
afterEach(() => vi.unstubAllGlobals())

describe('runtime config page', () => {
  it('shows effective, saved and overridden values and saves what the admin typed', async () => {
    signInAs('admin')
    const calls = mockFetch({ 'GET /api/settings/hub-runtime-config': { body: viewBody }, 'PUT /api/settings/hub-runtime-config': { status: 204 } })
    const w = await render(RuntimeConfigView)
    expect(w.find('[data-testid="runtime-pending"]').text()).toContain('Hub timezone')
    expect(w.find('[data-testid="rc-effective-run_retention_days"]').text()).toBe('90')
    const audit = w.find('[data-testid="rc-audit_retention_days"]')
    expect(audit.text()).toContain('BASTION_AUDIT_RETENTION_DAYS')
    expect(audit.text()).toContain('overrides')
    expect(audit.find('input').attributes('disabled')).toBeDefined()
    await w.find('[data-testid="rc-save"]').trigger('click')
    await flushPromises()
    const put = calls.find((c) => c.method === 'PUT')
    expect(put?.body).toEqual({ hub_timezone: 'Europe/Berlin', run_retention_days: 90 })
    w.unmount()
  })

  it('is read-only for a viewer', async () => {
    signInAs('viewer')
    mockFetch({ 'GET /api/settings/hub-runtime-config': { body: viewBody } })
    const w = await render(RuntimeConfigView)
    expect(w.find('[data-testid="rc-save"]').exists()).toBe(false)
    expect(w.find('[data-testid="rc-readonly"]').exists()).toBe(true)
    expect(w.find('[data-testid="rc-hub_timezone"] input').attributes('disabled')).toBeDefined()
    w.unmount()
  })

  it('shows a rejected save without losing the form', async () => {
    signInAs('admin')
    mockFetch({
      'GET /api/settings/hub-runtime-config': { body: viewBody },
      'PUT /api/settings/hub-runtime-config': { status: 400, body: { error: 'invalid_runtime_config', message: 'hub_timezone: must be an IANA timezone name', details: { field: 'hub_timezone' } } },
    })
    const w = await render(RuntimeConfigView)
    await w.find('[data-testid="rc-save"]').trigger('click')
    await flushPromises()
    expect(w.text()).toContain('IANA timezone')
    w.unmount()
  })
})

describe('about page', () => {
  it('shows the version from /api/system', async () => {
    signInAs('viewer')
    mockFetch({ 'GET /api/system': { body: { version: '1.2.3', build_time_unix: 1767225600, insecure_http: false, hub_timezone: 'UTC' } } })
    const w = await render(AboutView)
    expect(w.find('[data-testid="about-version"]').text()).toBe('1.2.3')
    w.unmount()
  })
})

describe('theme store', () => {
  it('resolves modes against the system preference', () => {
    expect(resolveTheme('system', true)).toBe('dark')
    expect(resolveTheme('system', false)).toBe('light')
    expect(resolveTheme('light', true)).toBe('light')
    expect(parseMode('dark')).toBe('dark')
    expect(parseMode('purple')).toBe('system')
    expect(parseMode(null)).toBe('system')
  })

  it('remembers the choice per browser and applies it to the document', () => {
    const s = useThemeStore()
    s.setMode('dark')
    expect(localStorage.getItem(THEME_KEY)).toBe('dark')
    expect(document.documentElement.dataset.theme).toBe('dark')
    setActivePinia(createPinia())
    expect(useThemeStore().mode).toBe('dark')
    useThemeStore().setMode('system')
    expect(localStorage.getItem(THEME_KEY)).toBeNull()
    expect(document.documentElement.dataset.theme).toBe(resolveTheme('system', window.matchMedia?.('(prefers-color-scheme: dark)').matches ?? false))
  })
})

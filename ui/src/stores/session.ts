import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api, configureClient, type Role, type SystemInfo } from '@/api'
import { can as roleCan, type Action } from '@/lib/permissions'

export type AuthState = 'unknown' | 'needs_setup' | 'anonymous' | 'authenticated'

// isLoopbackHost says whether the browser reached the Hub on this machine, where plain HTTP is fine.
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || h.endsWith('.localhost')
}

export type TransportWarning = null | 'insecure_mode' | 'refused'

/**
 * The banner rule: the page came over plain http from an address that is not loopback. With
 * --insecure-http the Hub serves it anyway ('insecure_mode': passwords cross the network in clear);
 * without, the Hub refuses such API calls ('refused': put it behind an HTTPS reverse proxy).
 */
export function transportWarning(loc: Pick<Location, 'protocol' | 'hostname'>, system: SystemInfo | null): TransportWarning {
  if (loc.protocol !== 'http:' || isLoopbackHost(loc.hostname)) return null
  return system && !system.insecure_http ? 'refused' : 'insecure_mode'
}

export const useSessionStore = defineStore('session', () => {
  const state = ref<AuthState>('unknown')
  const csrf = ref<string | null>(null)
  const system = ref<SystemInfo | null>(null)
  const username = ref<string | null>(null)
  const role = ref<Role | null>(null)

  configureClient({
    csrfToken: () => csrf.value,
    onUnauthorized: () => {
      if (state.value === 'authenticated') {
        state.value = 'anonymous'
        forget()
      }
    },
  })

  const authenticated = computed(() => state.value === 'authenticated')

  /** Whether the signed-in user's role allows action: pages hide or disable what it does not. */
  function can(action: Action): boolean {
    return authenticated.value && roleCan(role.value, action)
  }

  function forget(): void {
    csrf.value = null
    username.value = null
    role.value = null
  }

  async function loadSystem(): Promise<void> {
    try {
      system.value = await api.system()
    } catch {
      system.value = null // the page still works; only the banner and version need it
    }
  }

  /** Decides where the user stands: first run, signed out, or signed in. */
  async function refresh(): Promise<AuthState> {
    const setup = await api.setupStatus()
    if (setup.needs_setup) {
      state.value = 'needs_setup'
      forget()
      return state.value
    }
    const s = await api.session()
    csrf.value = s.authenticated ? (s.csrf_token ?? null) : null
    username.value = s.authenticated ? (s.username ?? null) : null
    role.value = s.authenticated ? (s.role ?? null) : null
    state.value = s.authenticated ? 'authenticated' : 'anonymous'
    return state.value
  }

  async function initialize(username: string, password: string): Promise<void> {
    await api.setupInitialize(username, password)
    state.value = 'anonymous'
  }

  async function login(name: string, password: string): Promise<void> {
    const r = await api.login(name, password)
    csrf.value = r.csrf_token
    username.value = r.username ?? null
    role.value = r.role ?? null
    state.value = 'authenticated'
  }

  async function logout(): Promise<void> {
    try {
      await api.logout()
    } finally {
      forget()
      state.value = 'anonymous'
    }
  }

  /** The session ended on the Hub (revoked from the sessions list): forget it without a request. */
  function signedOut(): void {
    forget()
    state.value = 'anonymous'
  }

  return { state, csrf, system, username, role, authenticated, can, loadSystem, refresh, initialize, login, logout, signedOut }
})

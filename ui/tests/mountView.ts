// What component tests of pages share: a signed-in session, and a page mounted the way the app
// mounts it (message and dialog providers, i18n, a router that accepts every path).
import { afterEach, beforeEach, vi } from 'vitest'
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { createMemoryHistory, createRouter, type Router } from 'vue-router'
import { defineComponent, h, type Component } from 'vue'
import { NDialogProvider, NMessageProvider } from 'naive-ui'
import { i18n } from '@/i18n'
import type { Role } from '@/api'
import { useSessionStore } from '@/stores/session'

/** Signs the current pinia's session in with role (the username defaults to the role's name). */
export function signInAs(role: Role, username: string = role) {
  const session = useSessionStore()
  session.state = 'authenticated'
  session.role = role
  session.username = username
}

/**
 * Registers the usual hooks of a page test file: before each test a fresh pinia, an admin signed
 * in and the English locale; after each, real timers, no stubbed globals and an empty body (the
 * pages attach to document.body).
 */
export function asSignedInAdmin() {
  beforeEach(() => {
    setActivePinia(createPinia())
    signInAs('admin')
    i18n.global.locale.value = 'en'
  })
  afterEach(() => {
    vi.useRealTimers()
    vi.unstubAllGlobals()
    document.body.innerHTML = ''
  })
}

export interface MountOptions {
  /** Where the router is before the page mounts. */
  path?: string
  stubs?: Record<string, boolean>
}

/** Mounts view with props inside the app's providers and waits for its first requests to settle. */
export async function mountView(
  view: Component,
  props: Record<string, unknown> = {},
  { path = '/', stubs = {} }: MountOptions = {},
): Promise<{ w: VueWrapper; router: Router }> {
  const router = createRouter({ history: createMemoryHistory(), routes: [{ path: '/:p(.*)*', component: { render: () => null } }] })
  await router.push(path)
  const Host = defineComponent({ render: () => h(NMessageProvider, () => h(NDialogProvider, () => h(view, props))) })
  const w = mount(Host, { global: { plugins: [i18n, router], stubs }, attachTo: document.body })
  await flushPromises()
  return { w, router }
}

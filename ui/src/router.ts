import { createRouter, createWebHistory, type RouteLocationNormalized } from 'vue-router'
import { useSessionStore } from '@/stores/session'

const AppShell = () => import('@/components/AppShell.vue')

export const routes = [
  { path: '/setup', name: 'setup', component: () => import('@/views/SetupView.vue'), meta: { public: true } },
  { path: '/login', name: 'login', component: () => import('@/views/LoginView.vue'), meta: { public: true } },
  {
    path: '/',
    component: AppShell,
    children: [
      { path: '', name: 'dashboard', component: () => import('@/views/DashboardView.vue') },
      { path: ':pathMatch(.*)*', name: 'not-found', component: () => import('@/views/NotFoundView.vue') },
    ],
  },
]

export const router = createRouter({ history: createWebHistory(), routes })

/** Where a navigation must go given the auth state, or null to let it through. */
export function guardTarget(state: string, to: Pick<RouteLocationNormalized, 'name' | 'fullPath' | 'meta'>) {
  if (state === 'needs_setup') return to.name === 'setup' ? null : { name: 'setup' }
  if (to.name === 'setup') return state === 'authenticated' ? { name: 'dashboard' } : { name: 'login' }
  if (state === 'authenticated') return to.name === 'login' ? { name: 'dashboard' } : null
  if (to.meta.public) return null
  return { name: 'login', query: to.fullPath !== '/' ? { redirect: to.fullPath } : {} }
}

router.beforeEach(async (to) => {
  const session = useSessionStore()
  if (session.state === 'unknown') {
    try {
      await session.refresh()
    } catch {
      // The Hub is unreachable; the login page shows the error when the user tries.
      session.state = 'anonymous'
    }
  }
  return guardTarget(session.state, to) ?? true
})

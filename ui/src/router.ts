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
      { path: 'command-center', name: 'command-center', component: () => import('@/views/CommandCenterView.vue') },
      { path: 'integrations', name: 'integrations', component: () => import('@/views/IntegrationsView.vue') },
      { path: 'jobs', name: 'jobs', component: () => import('@/views/JobsView.vue') },
      { path: 'jobs/new', name: 'job-new', component: () => import('@/views/JobEditorView.vue') },
      { path: 'jobs/:id', name: 'job', component: () => import('@/views/JobDetailView.vue'), props: true },
      { path: 'jobs/:id/edit', name: 'job-edit', component: () => import('@/views/JobEditorView.vue'), props: true },
      { path: 'runs', name: 'runs', component: () => import('@/views/RunsView.vue') },
      { path: 'runs/:id', name: 'run', component: () => import('@/views/RunDetailView.vue'), props: true },
      { path: 'runs/:id/console', name: 'run-console', component: () => import('@/views/RunConsoleView.vue'), props: true },
      { path: 'runs/:id/restore', name: 'restore', component: () => import('@/views/RestoreView.vue'), props: true },
      { path: 'operations/:id', name: 'operation', component: () => import('@/views/OperationView.vue'), props: true },
      { path: 'agents', name: 'agents', component: () => import('@/views/AgentsView.vue') },
      { path: 'agents/:id', name: 'agent', component: () => import('@/views/AgentDetailView.vue'), props: true },
      { path: 'bulk-operations', name: 'bulk-operations', component: () => import('@/views/BulkOperationsView.vue') },
      { path: 'bulk-operations/:id', name: 'bulk-operation', component: () => import('@/views/BulkOperationView.vue'), props: true },
      { path: 'notifications', name: 'notifications', component: () => import('@/views/NotificationsView.vue') },
      { path: 'settings', name: 'settings', component: () => import('@/views/SettingsView.vue') },
      { path: 'settings/runtime', name: 'runtime-config', component: () => import('@/views/RuntimeConfigView.vue') },
      { path: 'about', name: 'about', component: () => import('@/views/AboutView.vue') },
      { path: 'audit', name: 'audit', component: () => import('@/views/AuditView.vue') },
      { path: 'maintenance', name: 'maintenance', component: () => import('@/views/MaintenanceView.vue') },
      { path: 'users', name: 'users', component: () => import('@/views/UsersView.vue') },
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

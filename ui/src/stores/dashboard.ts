// The dashboard's numbers, computed in one place from the list endpoints (the Hub has no aggregate
// endpoint yet; when /api/dashboard/overview lands, only load() changes). Each section loads and
// fails on its own, so a missing backend piece (agents, notifications) does not blank the page.
import { defineStore } from 'pinia'
import { ref } from 'vue'
import { api, type Agent, type JobListItem, type NotificationQueueItem, type RunListItem, type Snapshot } from '@/api'

export interface DayBucket {
  day: string // YYYY-MM-DD in the chosen time zone
  success: number
  failed: number
  bytes: number
}

export interface RecentRun extends RunListItem {
  job_id: string
  job_name: string
}

export interface Attention {
  failedRuns: RecentRun[]
  failedNotifications: NotificationQueueItem[]
  errorSnapshots: (Snapshot & { job_name: string })[]
}

/** The calendar day of a unix timestamp in a time zone, as YYYY-MM-DD. */
export function dayKey(ts: number, timeZone: string): string {
  // en-CA formats dates as YYYY-MM-DD.
  return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date(ts * 1000))
}

/**
 * Buckets runs (successes, failures) and snapshot bytes into the last `days` calendar days ending
 * today, oldest first. Runs that are not finished, or rejected/canceled, count in neither series.
 */
export function bucketByDay(runs: RunListItem[], snapshots: Snapshot[], days: number, nowTs: number, timeZone: string): DayBucket[] {
  const buckets: DayBucket[] = []
  const index = new Map<string, DayBucket>()
  for (let i = days - 1; i >= 0; i--) {
    const day = dayKey(nowTs - i * 86400, timeZone)
    if (index.has(day)) continue // a DST day can map two offsets onto one date
    const b = { day, success: 0, failed: 0, bytes: 0 }
    buckets.push(b)
    index.set(day, b)
  }
  for (const r of runs) {
    const ts = r.ended_at ?? r.started_at
    const b = index.get(dayKey(ts, timeZone))
    if (!b) continue
    if (r.status === 'success') b.success++
    else if (r.status === 'failed') b.failed++
  }
  for (const s of snapshots) {
    const b = index.get(dayKey(s.ended_at, timeZone))
    if (b) b.bytes += s.transfer_bytes ?? s.source_bytes ?? 0
  }
  return buckets
}

type Section<T> = { data: T; loading: boolean; error: unknown }
const section = <T>(data: T): Section<T> => ({ data, loading: false, error: null })

const MAX_JOBS_SCANNED = 50

export const useDashboardStore = defineStore('dashboard', () => {
  const days = ref(14)
  const jobs = ref(section<JobListItem[]>([]))
  const chart = ref(section<DayBucket[]>([]))
  const recent = ref(section<RecentRun[]>([]))
  const agents = ref(section<{ online: number; offline: number; revoked: number; total: number }>({ online: 0, offline: 0, revoked: 0, total: 0 }))
  const attention = ref(section<Attention>({ failedRuns: [], failedNotifications: [], errorSnapshots: [] }))
  const notificationsError = ref<unknown>(null)

  async function loadAgents() {
    agents.value.loading = true
    agents.value.error = null
    try {
      const page = await api.agents.list({ status: 'all' })
      const list: Agent[] = page.items
      const revoked = list.filter((a) => a.revoked).length
      const online = list.filter((a) => !a.revoked && a.online).length
      agents.value.data = { online, offline: list.length - revoked - online, revoked, total: list.length }
    } catch (err) {
      agents.value.error = err
    } finally {
      agents.value.loading = false
    }
  }

  async function loadNotifications(): Promise<NotificationQueueItem[]> {
    notificationsError.value = null
    try {
      const page = await api.notifications.queue({ status: ['failed'], page: 1, page_size: 20 })
      return page.items
    } catch (err) {
      notificationsError.value = err
      return []
    }
  }

  async function load(timeZone: string, nowTs = Math.floor(Date.now() / 1000)) {
    for (const s of [jobs, chart, recent, attention]) {
      s.value.loading = true
      s.value.error = null
    }
    const agentsDone = loadAgents()
    const notifs = loadNotifications()
    try {
      const page = await api.jobs.list({ sort: 'updated_desc' })
      jobs.value.data = page.items
      const scanned = page.items.slice(0, MAX_JOBS_SCANNED)
      const perJob = await Promise.all(
        scanned.map(async (j) => {
          const [runs, snaps] = await Promise.all([
            api.jobs.runs(j.id).catch(() => [] as RunListItem[]),
            api.jobs.snapshots(j.id, { limit: 200 }).then((p) => p.items).catch(() => [] as Snapshot[]),
          ])
          return { job: j, runs, snaps }
        }),
      )
      const allRuns: RecentRun[] = []
      const allSnaps: Snapshot[] = []
      const errorSnaps: Attention['errorSnapshots'] = []
      for (const { job, runs, snaps } of perJob) {
        for (const r of runs) allRuns.push({ ...r, job_id: job.id, job_name: job.name })
        for (const s of snaps) {
          allSnaps.push(s)
          if (s.status === 'error') errorSnaps.push({ ...s, job_name: job.name })
        }
      }
      allRuns.sort((a, b) => b.started_at - a.started_at)
      const since = nowTs - days.value * 86400
      chart.value.data = bucketByDay(allRuns, allSnaps, days.value, nowTs, timeZone)
      recent.value.data = allRuns.slice(0, 10)
      attention.value.data = {
        failedRuns: allRuns.filter((r) => r.status === 'failed' && (r.ended_at ?? r.started_at) >= since).slice(0, 10),
        failedNotifications: await notifs,
        errorSnapshots: errorSnaps,
      }
    } catch (err) {
      for (const s of [jobs, chart, recent, attention]) s.value.error = err
    } finally {
      for (const s of [jobs, chart, recent, attention]) s.value.loading = false
    }
    await agentsDone
  }

  return { days, jobs, chart, recent, agents, attention, notificationsError, load }
})

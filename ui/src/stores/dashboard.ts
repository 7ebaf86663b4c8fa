// The dashboard's numbers, aggregated by the Hub in one request (GET /api/dashboard/overview):
// per-day counts over every run, not the newest few per job, in the Hub's time zone.
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api, type DashboardDay, type DashboardOverview } from '@/api'

export type DayBucket = DashboardDay

export const useDashboardStore = defineStore('dashboard', () => {
  const days = ref(14)
  const overview = ref<DashboardOverview | null>(null)
  const loading = ref(false)
  const error = ref<unknown>(null)
  let seq = 0

  async function load() {
    const mine = ++seq
    loading.value = true
    error.value = null
    try {
      const o = await api.dashboard.overview(days.value)
      if (mine === seq) overview.value = o
    } catch (err) {
      if (mine === seq) error.value = err
    } finally {
      if (mine === seq) loading.value = false
    }
  }

  const chart = computed(() => overview.value?.days ?? [])
  const totals = computed(() => {
    let success = 0
    let failed = 0
    let bytes = 0
    for (const d of chart.value) {
      success += d.success
      failed += d.failed
      bytes += d.bytes
    }
    return { success, failed, bytes }
  })
  const attentionTotal = computed(() => {
    const a = overview.value?.attention
    return a ? a.failed_runs_total + a.failed_notifications_total + a.error_snapshots_total : 0
  })

  return { days, overview, loading, error, load, chart, totals, attentionTotal }
})

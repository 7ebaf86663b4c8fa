import { defineStore } from 'pinia'
import { reactive, ref } from 'vue'
import { api, type JobListItem, type JobListQuery } from '@/api'

/** The jobs list page: filters live here so going back to the list keeps them. */
export const useJobsStore = defineStore('jobs', () => {
  const filters = reactive<Required<Pick<JobListQuery, 'q' | 'latest_status' | 'schedule_mode' | 'sort' | 'include_archived'>> & { scope: string }>({
    q: '',
    latest_status: 'all',
    schedule_mode: 'all',
    sort: 'updated_desc',
    include_archived: false,
    scope: 'all',
  })
  const page = ref(1)
  const pageSize = ref(20)
  const items = ref<JobListItem[]>([])
  const total = ref(0)
  const loading = ref(false)
  const error = ref<unknown>(null)
  let seq = 0

  async function load() {
    const mine = ++seq // a slower earlier answer must not overwrite a newer one
    loading.value = true
    error.value = null
    try {
      const res = await api.jobs.list({
        q: filters.q.trim() || undefined,
        latest_status: filters.latest_status === 'all' ? undefined : filters.latest_status,
        schedule_mode: filters.schedule_mode === 'all' ? undefined : filters.schedule_mode,
        sort: filters.sort,
        include_archived: filters.include_archived || undefined,
        scope: filters.scope === 'all' ? undefined : (filters.scope as JobListQuery['scope']),
        page: page.value,
        page_size: pageSize.value,
      })
      if (mine !== seq) return
      items.value = res.items
      total.value = res.total
    } catch (err) {
      if (mine === seq) error.value = err
    } finally {
      if (mine === seq) loading.value = false
    }
  }

  return { filters, page, pageSize, items, total, loading, error, load }
})

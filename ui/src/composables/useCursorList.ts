import { ref, type Ref } from 'vue'
import { useNotify } from '@/composables/useNotify'

export interface CursorPage<T> {
  items: T[]
  next_cursor?: string | null
}

// A list the Hub pages by keyset cursor (runs, audit): load() fetches the first page with the
// current filters, loadMore() appends the next one. A failed first page becomes `error` (shown in
// place of the list); a failed "Load more" is a toast, the rows already shown stay.
export function useCursorList<T>(fetchPage: (after?: string) => Promise<CursorPage<T>>) {
  const notify = useNotify()
  const items = ref([]) as Ref<T[]>
  const cursor = ref<string | null>(null)
  const loading = ref(false)
  const loadingMore = ref(false)
  const error = ref<unknown>(null)

  async function load() {
    loading.value = true
    try {
      const page = await fetchPage()
      items.value = page.items
      cursor.value = page.next_cursor ?? null
      error.value = null
    } catch (err) {
      error.value = err
    } finally {
      loading.value = false
    }
  }

  async function loadMore() {
    if (!cursor.value) return
    loadingMore.value = true
    try {
      const page = await fetchPage(cursor.value)
      items.value = [...items.value, ...page.items]
      cursor.value = page.next_cursor ?? null
    } catch (err) {
      notify.error(err)
    } finally {
      loadingMore.value = false
    }
  }

  return { items, cursor, loading, loadingMore, error, load, loadMore }
}

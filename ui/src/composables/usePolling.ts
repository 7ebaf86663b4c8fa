// Following something on the Hub until it is finished (an operation, a bulk operation): fetch on
// mount, ask again every intervalMs while more() says it can still change, and stop when the page
// goes away. A failed fetch backs off (doubling up to maxBackoffMs) unless the answer is final:
// a 4xx other than 408 and 429 gets the same answer when asked again, so polling stops.
import { onBeforeUnmount, onMounted, ref } from 'vue'
import { ApiError } from '@/api/client'

export interface PollingOptions {
  intervalMs: number
  maxBackoffMs?: number
}

export function isFinalError(err: unknown): boolean {
  return err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429
}

export function usePolling(fetchOnce: () => Promise<void>, more: () => boolean, { intervalMs, maxBackoffMs = 30_000 }: PollingOptions) {
  const error = ref<unknown>(null)
  let timer: number | undefined
  let stopped = false // unmounted: a request still in flight must not schedule another
  let delay = intervalMs

  /** Fetches now (also after an action changed the thing) and schedules the next poll. */
  async function refresh() {
    window.clearTimeout(timer)
    try {
      await fetchOnce()
      error.value = null
      delay = intervalMs
    } catch (err) {
      error.value = err
      if (isFinalError(err)) return
      delay = Math.min(delay * 2, maxBackoffMs)
    }
    if (!stopped && more()) timer = window.setTimeout(refresh, delay)
  }
  onMounted(refresh)
  onBeforeUnmount(() => {
    stopped = true
    window.clearTimeout(timer)
  })
  /** Forgets the back-off, e.g. after an action that gives the thing new work. */
  function resetBackoff() {
    delay = intervalMs
  }
  return { error, refresh, resetBackoff }
}

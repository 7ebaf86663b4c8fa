import { afterAll } from 'vitest'

// naive-ui's toasts hide themselves on a window timer that unmounting does not clear (an error
// toast stays 8 s). One still pending when a test file ends can fire after the DOM is torn
// down, throw "window is not defined", and fail the whole run although every test passed.
// Window timers are tracked here and cleared when the file is done. Files that run in node
// (no window) are left alone.
if (typeof window !== 'undefined') {
  const w = window
  const pending = new Set<number>()
  const realSet = w.setTimeout.bind(w)
  const realClear = w.clearTimeout.bind(w)
  w.setTimeout = ((fn: TimerHandler, ms?: number, ...args: unknown[]) => {
    const id = realSet(
      (...a: unknown[]) => {
        pending.delete(id)
        if (typeof fn === 'function') fn(...a)
      },
      ms,
      ...args,
    )
    pending.add(id)
    return id
  }) as typeof w.setTimeout
  w.clearTimeout = ((id?: number) => {
    if (id !== undefined) pending.delete(id)
    realClear(id)
  }) as typeof w.clearTimeout
  afterAll(() => {
    for (const id of pending) realClear(id)
    pending.clear()
  })
}

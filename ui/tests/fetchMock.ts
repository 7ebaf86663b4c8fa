import { vi } from 'vitest'

export interface Call {
  method: string
  url: string
  headers: Record<string, string>
  body: unknown
}

type Handler = (call: Call) => { status?: number; body?: unknown; headers?: Record<string, string> }

/** Replaces global fetch with a router of canned answers keyed by "METHOD /path" (query ignored). */
export function mockFetch(routes: Record<string, Handler | { status?: number; body?: unknown; headers?: Record<string, string> }>) {
  const calls: Call[] = []
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input)
    const method = (init?.method ?? 'GET').toUpperCase()
    const headers = (init?.headers ?? {}) as Record<string, string>
    const call: Call = { method, url, headers, body: init?.body ? JSON.parse(String(init.body)) : undefined }
    calls.push(call)
    const key = `${method} ${url.split('?')[0]}`
    const route = routes[key]
    if (!route) {
      return new Response(JSON.stringify({ error: 'not_found', message: `no route ${key}`, request_id: 'req-404' }), { status: 404 })
    }
    const r = typeof route === 'function' ? route(call) : route
    const status = r.status ?? 200
    const body = status === 204 ? null : JSON.stringify(r.body ?? {})
    return new Response(body, { status, headers: { 'Content-Type': 'application/json', ...(r.headers ?? {}) } })
  })
  vi.stubGlobal('fetch', fn)
  return calls
}

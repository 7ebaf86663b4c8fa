import type { ApiErrorBody, ApiErrorDetails } from './types'

// ApiError carries what the Hub said about a failed request: the machine code, its message, the
// details (field, reason, params) and the request ID a user can quote when reporting it.
export class ApiError extends Error {
  readonly status: number
  readonly code: string
  readonly details?: ApiErrorDetails
  readonly requestId?: string

  constructor(status: number, code: string, message: string, details?: ApiErrorDetails, requestId?: string) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.details = details
    this.requestId = requestId
  }

  /** The field the server blamed, e.g. `spec.target.base_url` or `schedule_timezone`. */
  get field(): string | undefined {
    return this.details?.field
  }

  get retryAfterSeconds(): number | undefined {
    const v = this.details?.params?.retry_after_seconds
    return typeof v === 'number' ? v : undefined
  }
}

export type Query = Record<string, string | number | boolean | null | undefined | (string | number)[]>

export interface RequestOptions {
  query?: Query
  body?: unknown
  signal?: AbortSignal
}

type Hooks = {
  csrfToken: () => string | null
  onUnauthorized: (err: ApiError) => void
}

const hooks: Hooks = {
  csrfToken: () => null,
  onUnauthorized: () => {},
}

/** The session store plugs in the CSRF token and what to do when the session is gone. */
export function configureClient(h: Partial<Hooks>): void {
  Object.assign(hooks, h)
}

export function buildUrl(path: string, query?: Query): string {
  if (!query) return path
  const qs = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue
    if (Array.isArray(value)) {
      for (const v of value) qs.append(key, String(v))
    } else {
      qs.set(key, String(value))
    }
  }
  const s = qs.toString()
  return s ? `${path}?${s}` : path
}

function isErrorBody(v: unknown): v is ApiErrorBody {
  return typeof v === 'object' && v !== null && typeof (v as ApiErrorBody).error === 'string'
}

export async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  let body: string | undefined
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(opts.body)
  }
  if (method !== 'GET' && method !== 'HEAD') {
    const csrf = hooks.csrfToken()
    if (csrf) headers['X-CSRF-Token'] = csrf
  }
  let res: Response
  try {
    res = await fetch(buildUrl(path, opts.query), {
      method,
      headers,
      body,
      credentials: 'same-origin',
      signal: opts.signal,
    })
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err
    throw new ApiError(0, 'network_error', err instanceof Error ? err.message : String(err))
  }
  const requestId = res.headers.get('X-Request-Id') ?? undefined
  const text = res.status === 204 ? '' : await res.text()
  let parsed: unknown = undefined
  if (text) {
    try {
      parsed = JSON.parse(text)
    } catch {
      parsed = undefined
    }
  }
  if (!res.ok) {
    const err = isErrorBody(parsed)
      ? new ApiError(res.status, parsed.error, parsed.message || parsed.error, parsed.details, parsed.request_id ?? requestId)
      : new ApiError(res.status, `http_${res.status}`, text.trim().slice(0, 200) || res.statusText || `HTTP ${res.status}`, undefined, requestId)
    if (res.status === 401 && err.code === 'unauthorized') hooks.onUnauthorized(err)
    throw err
  }
  if (text && parsed === undefined) {
    throw new ApiError(res.status, 'invalid_response', 'The Hub answered with something that is not JSON', undefined, requestId)
  }
  return parsed as T
}

export const http = {
  get: <T>(path: string, query?: Query, signal?: AbortSignal) => request<T>('GET', path, { query, signal }),
  post: <T>(path: string, body?: unknown, query?: Query) => request<T>('POST', path, { body, query }),
  put: <T>(path: string, body?: unknown) => request<T>('PUT', path, { body }),
  del: <T>(path: string, query?: Query) => request<T>('DELETE', path, { query }),
}

/** Encodes one path segment (ids, secret names, channels). */
export const seg = (s: string) => encodeURIComponent(s)

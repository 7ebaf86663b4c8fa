import { ApiError } from '@/api/client'

export interface ErrorInfo {
  message: string
  code?: string
  requestId?: string
}

export function errorInfo(err: unknown): ErrorInfo {
  if (err instanceof ApiError) {
    return { message: err.message, code: err.code, requestId: err.requestId }
  }
  if (err instanceof Error) return { message: err.message }
  return { message: String(err) }
}

/** One line a user can quote: the Hub's message and the request ID it logged under. */
export function errorText(err: unknown): string {
  const i = errorInfo(err)
  return i.requestId ? `${i.message} (request ID ${i.requestId})` : i.message
}

/** Field → message for an API validation error: details.field plus any details.violations. */
export function fieldErrors(err: unknown): Record<string, string> {
  if (!(err instanceof ApiError)) return {}
  const out: Record<string, string> = {}
  if (err.details?.field) out[err.details.field] = err.message
  for (const v of err.details?.violations ?? []) {
    if (v.field && !out[v.field]) out[v.field] = v.reason
  }
  return out
}

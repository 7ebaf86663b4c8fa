// Formatting helpers shared by every page. Pure functions, so they are cheap to test.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-'
  let v = Math.abs(n)
  let i = 0
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024
    i++
  }
  const s = i === 0 ? String(v) : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)
  return `${n < 0 ? '-' : ''}${s} ${UNITS[i]}`
}

export function formatRate(bps: number | null | undefined): string {
  if (bps === null || bps === undefined || !Number.isFinite(bps)) return '-'
  return `${formatBytes(bps)}/s`
}

/** vue-i18n's `t` with named parameters: the units of a duration are words and get translated. */
export type Translate = (key: string, named: Record<string, unknown>) => string

export function formatDuration(seconds: number | null | undefined, t: Translate): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '-'
  const s = Math.round(seconds)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = s % 60
  if (h > 0) return t('duration.hm', { h, m })
  if (m > 0) return t('duration.ms', { m, s: sec })
  return t('duration.s', { s: sec })
}

export function formatUnix(ts: number | null | undefined, locale?: string, timeZone?: string): string {
  if (ts === null || ts === undefined || !Number.isFinite(ts) || ts <= 0) return '-'
  return new Date(ts * 1000).toLocaleString(locale, {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false,
    timeZone,
  })
}

export function formatIso(iso: string, locale?: string, timeZone?: string): string {
  const ms = Date.parse(iso)
  return Number.isNaN(ms) ? iso : formatUnix(ms / 1000, locale, timeZone)
}

export function shortId(id: string | null | undefined): string {
  return id ? id.slice(0, 8) : '-'
}

export const TERMINAL_RUN_STATUSES = ['success', 'failed', 'rejected', 'canceled'] as const
export function isTerminal(status: string | null | undefined): boolean {
  return !!status && (TERMINAL_RUN_STATUSES as readonly string[]).includes(status)
}

export function statusTagType(status: string | null | undefined): 'success' | 'error' | 'warning' | 'info' | 'default' {
  switch (status) {
    case 'success':
    case 'sent':
    case 'present':
    case 'synced':
      return 'success'
    case 'failed':
    case 'error':
    case 'rejected':
      return 'error'
    case 'running':
    case 'sending':
    case 'deleting':
    case 'pending':
      return 'info'
    case 'queued':
    case 'canceled':
    case 'missing':
      return 'warning'
    default:
      return 'default'
  }
}

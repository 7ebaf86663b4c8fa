// How recently a job's snapshots were proven by a restore drill, for the "proven N days ago"
// badges of the job list, the job page and the dashboard. Pure, so it is cheap to test.

export interface ProofFields {
  last_proven_at?: number | null
  last_verify_status?: string | null
  verify_overdue?: boolean
}

export type ProofKind = 'failed' | 'never' | 'stale' | 'fresh'

export interface Proof {
  kind: ProofKind
  /** Whole calendar days (in the browser's time zone) since the last successful drill; null: never. */
  days: number | null
}

/** Calendar days between two instants in the browser's zone: 0 on the same day, 1 yesterday. */
export function calendarDaysBetween(fromUnix: number, nowMs: number): number {
  const a = new Date(fromUnix * 1000)
  const b = new Date(nowMs)
  const da = Date.UTC(a.getFullYear(), a.getMonth(), a.getDate())
  const db = Date.UTC(b.getFullYear(), b.getMonth(), b.getDate())
  return Math.max(0, Math.round((db - da) / 86_400_000))
}

export function proofOf(j: ProofFields, nowMs: number = Date.now()): Proof {
  const days = j.last_proven_at ? calendarDaysBetween(j.last_proven_at, nowMs) : null
  if (j.last_verify_status === 'failed') return { kind: 'failed', days }
  if (days === null) return { kind: 'never', days }
  return { kind: j.verify_overdue ? 'stale' : 'fresh', days }
}

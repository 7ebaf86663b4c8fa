// The schedule builder: "simple" presets are UI sugar saved as the cron strings of hub.md §6
// ("Simple"), so every preset maps to exactly one cron string and back.

export type SimpleKind = 'every_minutes' | 'hourly' | 'daily' | 'weekly' | 'monthly'
export type ScheduleMode = 'manual' | 'simple' | 'cron'

export interface SimpleSchedule {
  kind: SimpleKind
  /** every_minutes: N in `*\/N * * * *` (1..59) */
  everyMinutes: number
  minute: number // 0..59
  hour: number // 0..23
  weekday: number // 0..6, Sunday = 0
  monthday: number // 1..28
}

export interface ScheduleForm {
  mode: ScheduleMode
  simple: SimpleSchedule
  cron: string
}

export const defaultSimple = (): SimpleSchedule => ({
  kind: 'daily',
  everyMinutes: 15,
  minute: 0,
  hour: 2,
  weekday: 0,
  monthday: 1,
})

export const defaultSchedule = (): ScheduleForm => ({ mode: 'manual', simple: defaultSimple(), cron: '' })

const RANGES = {
  everyMinutes: [1, 59],
  minute: [0, 59],
  hour: [0, 23],
  weekday: [0, 6],
  monthday: [1, 28],
} as const

function inRange(v: number, key: keyof typeof RANGES): boolean {
  const [lo, hi] = RANGES[key]
  return Number.isInteger(v) && v >= lo && v <= hi
}

/** Which field of a simple schedule is out of range, if any. */
export function simpleError(s: SimpleSchedule): keyof typeof RANGES | null {
  const need: Record<SimpleKind, (keyof typeof RANGES)[]> = {
    every_minutes: ['everyMinutes'],
    hourly: ['minute'],
    daily: ['minute', 'hour'],
    weekly: ['minute', 'hour', 'weekday'],
    monthly: ['minute', 'hour', 'monthday'],
  }
  for (const key of need[s.kind]) if (!inRange(s[key], key)) return key
  return null
}

export function simpleToCron(s: SimpleSchedule): string {
  switch (s.kind) {
    case 'every_minutes':
      return `*/${s.everyMinutes} * * * *`
    case 'hourly':
      return `${s.minute} * * * *`
    case 'daily':
      return `${s.minute} ${s.hour} * * *`
    case 'weekly':
      return `${s.minute} ${s.hour} * * ${s.weekday}`
    case 'monthly':
      return `${s.minute} ${s.hour} ${s.monthday} * *`
  }
}

/** The cron string to save, or null for a manual job. */
export function scheduleToCron(f: ScheduleForm): string | null {
  if (f.mode === 'manual') return null
  if (f.mode === 'simple') return simpleToCron(f.simple)
  const c = f.cron.trim().replace(/\s+/g, ' ')
  return c === '' ? null : c
}

const NUM = /^(0|[1-9][0-9]?)$/

function num(s: string, key: keyof typeof RANGES): number | null {
  if (!NUM.test(s)) return null
  const v = Number(s)
  return inRange(v, key) ? v : null
}

/** Recognises the cron strings the simple builder writes; anything else is null. */
export function cronToSimple(cron: string): SimpleSchedule | null {
  let fields = cron.trim().split(/\s+/)
  // The Hub accepts a 6-field form whose seconds field is exactly 0.
  if (fields.length === 6 && fields[0] === '0') fields = fields.slice(1)
  if (fields.length !== 5) return null
  const [mi, h, dom, mon, dow] = fields as [string, string, string, string, string]
  if (mon !== '*') return null
  const base = defaultSimple()

  const every = /^\*\/(\d+)$/.exec(mi)
  if (every && h === '*' && dom === '*' && dow === '*') {
    const n = num(every[1]!, 'everyMinutes')
    return n === null ? null : { ...base, kind: 'every_minutes', everyMinutes: n }
  }
  const minute = num(mi, 'minute')
  if (minute === null) return null
  if (h === '*') {
    return dom === '*' && dow === '*' ? { ...base, kind: 'hourly', minute } : null
  }
  const hour = num(h, 'hour')
  if (hour === null) return null
  if (dom === '*' && dow === '*') return { ...base, kind: 'daily', minute, hour }
  if (dom === '*') {
    const weekday = num(dow, 'weekday')
    return weekday === null ? null : { ...base, kind: 'weekly', minute, hour, weekday }
  }
  if (dow === '*') {
    const monthday = num(dom, 'monthday')
    return monthday === null ? null : { ...base, kind: 'monthly', minute, hour, monthday }
  }
  return null
}

/** The form for a saved schedule: manual, a simple preset when it is one, else raw cron. */
export function cronToSchedule(cron: string | null | undefined): ScheduleForm {
  const c = (cron ?? '').trim()
  if (c === '') return defaultSchedule()
  const simple = cronToSimple(c)
  if (simple) return { mode: 'simple', simple, cron: c }
  return { mode: 'cron', simple: defaultSimple(), cron: c }
}

import { describe, expect, it } from 'vitest'
import { cronToSchedule, cronToSimple, defaultSimple, scheduleToCron, simpleError, simpleToCron, type SimpleSchedule } from '@/lib/schedule'

const s = (over: Partial<SimpleSchedule>): SimpleSchedule => ({ ...defaultSimple(), ...over })

describe('schedule builder', () => {
  // hub.md §6: `*/N * * * *`, `M * * * *`, `M H * * *`, `M H * * D` (D 0–6, Sunday 0), `M H d * *` (d 1–28).
  const table: [SimpleSchedule, string][] = [
    [s({ kind: 'every_minutes', everyMinutes: 15 }), '*/15 * * * *'],
    [s({ kind: 'every_minutes', everyMinutes: 1 }), '*/1 * * * *'],
    [s({ kind: 'hourly', minute: 7 }), '7 * * * *'],
    [s({ kind: 'daily', minute: 30, hour: 2 }), '30 2 * * *'],
    [s({ kind: 'daily', minute: 0, hour: 0 }), '0 0 * * *'],
    [s({ kind: 'weekly', minute: 5, hour: 23, weekday: 0 }), '5 23 * * 0'],
    [s({ kind: 'weekly', minute: 0, hour: 4, weekday: 6 }), '0 4 * * 6'],
    [s({ kind: 'monthly', minute: 45, hour: 1, monthday: 28 }), '45 1 28 * *'],
    [s({ kind: 'monthly', minute: 0, hour: 12, monthday: 1 }), '0 12 1 * *'],
  ]

  it.each(table)('writes %o as %s and reads it back', (simple, cron) => {
    expect(simpleToCron(simple)).toBe(cron)
    const back = cronToSimple(cron)
    expect(back).not.toBeNull()
    expect(simpleToCron(back!)).toBe(cron)
    expect(back!.kind).toBe(simple.kind)
  })

  it('reads only the fields that matter into the preset', () => {
    expect(cronToSimple('30 2 * * *')).toMatchObject({ kind: 'daily', minute: 30, hour: 2 })
    expect(cronToSimple('5 23 * * 0')).toMatchObject({ kind: 'weekly', minute: 5, hour: 23, weekday: 0 })
    expect(cronToSimple('45 1 28 * *')).toMatchObject({ kind: 'monthly', minute: 45, hour: 1, monthday: 28 })
  })

  it('accepts the 6-field form with seconds 0', () => {
    expect(cronToSimple('0 30 2 * * *')).toMatchObject({ kind: 'daily', minute: 30, hour: 2 })
  })

  it.each([
    '0 0 29 * *', // day 29 is outside the builder's 1–28
    '0 0 * * 7', // Sunday is 0 in the builder
    '0 0 1 * 1', // both day fields
    '0 0 * 1 *', // a month
    '1,2 * * * *',
    '0-5 * * * *',
    '*/0 * * * *',
    '*/60 * * * *',
    '60 * * * *',
    '0 24 * * *',
    '00 2 * * *',
    '*/5 1 * * *',
    '* * * * *',
    '10 0 * * * *', // seconds other than 0
    '@daily',
    '',
  ])('keeps %s as raw cron', (cron) => {
    expect(cronToSimple(cron)).toBeNull()
  })

  it('maps manual, presets and raw cron to the saved value', () => {
    expect(scheduleToCron({ mode: 'manual', simple: defaultSimple(), cron: '1 1 1 1 1' })).toBeNull()
    expect(scheduleToCron({ mode: 'simple', simple: s({ kind: 'hourly', minute: 3 }), cron: '' })).toBe('3 * * * *')
    expect(scheduleToCron({ mode: 'cron', simple: defaultSimple(), cron: '  0   */6 * * 1-5 ' })).toBe('0 */6 * * 1-5')
    expect(scheduleToCron({ mode: 'cron', simple: defaultSimple(), cron: '   ' })).toBeNull()
  })

  it('opens a saved schedule in the right mode', () => {
    expect(cronToSchedule(null).mode).toBe('manual')
    expect(cronToSchedule('').mode).toBe('manual')
    expect(cronToSchedule('*/10 * * * *')).toMatchObject({ mode: 'simple', simple: { kind: 'every_minutes', everyMinutes: 10 } })
    expect(cronToSchedule('0 */6 * * 1-5')).toMatchObject({ mode: 'cron', cron: '0 */6 * * 1-5' })
  })

  it('flags out-of-range preset fields', () => {
    expect(simpleError(s({ kind: 'daily', hour: 24 }))).toBe('hour')
    expect(simpleError(s({ kind: 'monthly', monthday: 29 }))).toBe('monthday')
    expect(simpleError(s({ kind: 'every_minutes', everyMinutes: 0 }))).toBe('everyMinutes')
    expect(simpleError(s({ kind: 'weekly', weekday: 7 }))).toBe('weekday')
    expect(simpleError(s({ kind: 'hourly', minute: 1.5 }))).toBe('minute')
    expect(simpleError(s({ kind: 'hourly', hour: 99 }))).toBeNull() // hour does not matter hourly
  })
})

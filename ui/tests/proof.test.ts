import { describe, expect, it } from 'vitest'
import type { JobDetail } from '@/api/types'
import { calendarDaysBetween, proofOf } from '@/lib/proof'
import { formToRequest, jobToForm, newJobForm, validateForm, WEEKLY_VERIFY_CRON } from '@/lib/jobForm'

const noon = new Date(2026, 0, 10, 12, 0, 0).getTime() // local time
const at = (d: number, h: number) => Math.floor(new Date(2026, 0, d, h, 0, 0).getTime() / 1000)

describe('proof', () => {
  it('counts calendar days in the local zone', () => {
    expect(calendarDaysBetween(at(10, 1), noon)).toBe(0)
    expect(calendarDaysBetween(at(9, 23), noon)).toBe(1)
    expect(calendarDaysBetween(at(1, 12), noon)).toBe(9)
  })

  it('says failed, never, stale or fresh', () => {
    expect(proofOf({}, noon)).toEqual({ kind: 'never', days: null })
    expect(proofOf({ last_proven_at: at(10, 3), verify_overdue: false }, noon)).toEqual({ kind: 'fresh', days: 0 })
    expect(proofOf({ last_proven_at: at(1, 3), verify_overdue: true }, noon)).toEqual({ kind: 'stale', days: 9 })
    expect(proofOf({ last_proven_at: at(8, 3), last_verify_status: 'failed' }, noon)).toEqual({ kind: 'failed', days: 2 })
  })
})

describe('job form verification', () => {
  it('maps none, weekly and a custom restore test to the write body and back', () => {
    const f = newJobForm('Europe/Paris')
    expect(formToRequest(f).verification).toBeNull()
    f.verifyPreset = 'weekly'
    expect(formToRequest(f).verification).toEqual({ schedule: WEEKLY_VERIFY_CRON, timezone: 'Europe/Paris', mode: 'verify' })
    f.verifyPreset = 'custom'
    f.verifyCron = ' 0 4 1 * * '
    f.verifyMode = 'restore_test'
    f.verifySampleFiles = 20
    const v = formToRequest(f).verification
    expect(v).toEqual({ schedule: '0 4 1 * *', timezone: 'Europe/Paris', mode: 'restore_test', sample_files: 20 })

    const job = { ...formToRequest(newJobForm()), id: 'j', created_at: 1, updated_at: 1, verification: v } as unknown as JobDetail
    const back = jobToForm(job)
    expect([back.verifyPreset, back.verifyCron, back.verifyMode, back.verifySampleFiles]).toEqual(['custom', '0 4 1 * *', 'restore_test', 20])
    const weekly = jobToForm({ ...job, verification: { schedule: WEEKLY_VERIFY_CRON, mode: 'verify' } })
    expect(weekly.verifyPreset).toBe('weekly')
  })

  it('requires a cron for a custom drill schedule', () => {
    const f = newJobForm()
    f.verifyPreset = 'custom'
    f.verifyCron = ' '
    expect(validateForm(f)['verification.schedule']).toBe('required')
  })
})

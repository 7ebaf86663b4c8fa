import { describe, expect, it } from 'vitest'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import en from '@/i18n/en'
import zhCN from '@/i18n/zh-CN'
import { detectLocale } from '@/i18n'

function keys(obj: object, prefix = ''): string[] {
  return Object.entries(obj).flatMap(([k, v]) =>
    typeof v === 'string' ? [`${prefix}${k}`] : keys(v as object, `${prefix}${k}.`),
  )
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) return sources(p)
    return /\.(vue|ts)$/.test(name) ? [p] : []
  })
}

describe('i18n', () => {
  it('has the same keys in English and Simplified Chinese', () => {
    expect(keys(zhCN).sort()).toEqual(keys(en).sort())
  })

  it('defines every literal key the sources use', () => {
    const defined = new Set(keys(en))
    const missing: string[] = []
    const root = join(__dirname, '..', 'src')
    for (const file of sources(root)) {
      const text = readFileSync(file, 'utf8')
      for (const m of text.matchAll(/\bt\(\s*'([a-zA-Z0-9_.]+)'/g)) {
        if (!defined.has(m[1]!)) missing.push(`${file.slice(root.length + 1)}: ${m[1]}`)
      }
    }
    expect(missing).toEqual([])
  })

  it('has no empty message', () => {
    const flat = (o: object): string[] => Object.values(o).flatMap((v) => (typeof v === 'string' ? [v] : flat(v as object)))
    expect(flat(en).filter((s) => s.trim() === '')).toEqual([])
    expect(flat(zhCN).filter((s) => s.trim() === '')).toEqual([])
  })

  it('picks the stored locale, else the browser language, else English', () => {
    expect(detectLocale('zh-CN', ['en-US'])).toBe('zh-CN')
    expect(detectLocale(null, ['zh-TW', 'en'])).toBe('zh-CN')
    expect(detectLocale(null, ['de-DE', 'en-GB'])).toBe('en')
    expect(detectLocale('fr', ['fr-FR'])).toBe('en')
  })
})

import { describe, expect, it } from 'vitest'
import en from '@/i18n/en'
import zh from '@/i18n/zh-CN'
import { formToSpec, newJobForm, specToForm, validateForm, MIB } from '@/lib/jobForm'
import { targetKind, targetKinds } from '@/lib/targetKinds'

const targets: Record<string, Record<string, unknown>> = {
  local_dir: { type: 'local_dir', base_dir: '/srv/backups', part_size_bytes: 8 * MIB },
  webdav: { type: 'webdav', base_url: 'https://dav.example/b/', secret_name: 'nas', part_size_bytes: 8 * MIB },
  s3: { type: 's3', endpoint: 'https://s3.example', region: 'eu-west-1', bucket: 'bk', prefix: 'hosts/a', secret_name: 'store', path_style: true, part_size_bytes: 8 * MIB },
}

describe('target kinds', () => {
  it('lists each kind once, with its name in both locales', () => {
    const types = targetKinds.map((k) => k.type)
    expect(new Set(types).size).toBe(types.length)
    for (const k of targetKinds) {
      const [group, sub, key] = k.labelKey.split('.') as [string, string, string]
      for (const msgs of [en, zh] as unknown as Record<string, Record<string, Record<string, string>>>[]) {
        expect(msgs[group]?.[sub]?.[key], `${k.labelKey}`).toBeTruthy()
      }
    }
  })

  it('round-trips every kind through the form unchanged', () => {
    for (const k of targetKinds) {
      const target = targets[k.type]
      expect(target, `a fixture for ${k.type}`).toBeDefined()
      const spec = formToSpec(newJobForm())
      const f = specToForm({ ...spec, target } as never)
      expect(f.targetType).toBe(k.type)
      expect(formToSpec(f).target).toEqual(target)
      const errs = validateForm({ ...f, name: 'j', fsPaths: ['/a'] })
      expect(Object.keys(errs).filter((e) => e.startsWith('spec.target'))).toEqual([])
    }
  })

  it('falls back to the first kind for a type this UI does not know', () => {
    expect(targetKind('nope').type).toBe(targetKinds[0]!.type)
  })
})

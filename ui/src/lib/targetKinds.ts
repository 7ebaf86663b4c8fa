// The target kinds the job editor offers: one entry per backend driver (engine/targets/all), with
// its form and how its fields map to spec.target. Adding a target kind is one entry here, its form
// component and its strings (editor.targets.<type> and the form's labels) in both locales.
import { defineAsyncComponent, type Component } from 'vue'
import type { JobForm } from '@/lib/jobForm'

type Loose = Record<string, unknown>

export interface TargetKind {
  /** spec.target.type */
  type: string
  /** i18n key of its name */
  labelKey: string
  /** The secret kind of its credential (/api/nodes/{node}/secrets/{kind}), or null. */
  secretKind: string | null
  /** Its fields in the editor. Props: form, fe (field → form-item props), secretOptions; emits clear(field), browse. */
  form: Component
  /** What its browse button opens: a directory on the job's node, or the WebDAV share. */
  picker: 'fs' | 'webdav'
  /** spec.target without part_size_bytes. */
  toSpec(f: JobForm): Loose
  /** Fills the form from spec.target. */
  fromSpec(f: JobForm, t: Loose): void
  /** Client-side checks, keyed by the field names the Hub reports. */
  validate(f: JobForm, errs: Record<string, string>): void
  /** The credential picked, and the URL it is sent to (for its origin binding). */
  secretName(f: JobForm): string
  endpoint(f: JobForm): string
}

const str = (v: unknown) => (typeof v === 'string' ? v : '')

export const targetKinds: TargetKind[] = [
  {
    type: 'local_dir',
    labelKey: 'editor.targets.local_dir',
    secretKind: null,
    form: defineAsyncComponent(() => import('@/components/targets/LocalDirTargetForm.vue')),
    picker: 'fs',
    toSpec: (f) => ({ type: 'local_dir', base_dir: f.localBaseDir.trim() }),
    fromSpec: (f, t) => (f.localBaseDir = str(t.base_dir)),
    validate: (f, errs) => {
      if (!f.localBaseDir.trim()) errs['spec.target.base_dir'] = 'required'
    },
    secretName: () => '',
    endpoint: () => '',
  },
  {
    type: 'webdav',
    labelKey: 'editor.targets.webdav',
    secretKind: 'webdav',
    form: defineAsyncComponent(() => import('@/components/targets/WebdavTargetForm.vue')),
    picker: 'webdav',
    toSpec: (f) => ({ type: 'webdav', base_url: f.webdavBaseUrl.trim(), secret_name: f.webdavSecretName.trim() }),
    fromSpec: (f, t) => {
      f.webdavBaseUrl = str(t.base_url)
      f.webdavSecretName = str(t.secret_name)
    },
    validate: (f, errs) => {
      if (!/^https?:\/\/[^/\s]+/i.test(f.webdavBaseUrl.trim())) errs['spec.target.base_url'] = 'invalid_url'
      if (!f.webdavSecretName.trim()) errs['spec.target.secret_name'] = 'required'
    },
    secretName: (f) => f.webdavSecretName.trim(),
    endpoint: (f) => f.webdavBaseUrl.trim(),
  },
]

/** The kind of type; the first (local_dir) for a type this UI does not know. */
export function targetKind(type: string): TargetKind {
  return targetKinds.find((k) => k.type === type) ?? targetKinds[0]!
}

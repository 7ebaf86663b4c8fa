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
  /** What its browse button opens: a directory on the job's node, the WebDAV share, or nothing. */
  picker: 'fs' | 'webdav' | null
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
  {
    type: 's3',
    labelKey: 'editor.targets.s3',
    secretKind: 's3',
    form: defineAsyncComponent(() => import('@/components/targets/S3TargetForm.vue')),
    picker: null,
    // Empty region and prefix and a false path_style are left out, as the Hub stores them.
    toSpec: (f) => {
      const t: Loose = { type: 's3', endpoint: f.s3Endpoint.trim() }
      if (f.s3Region.trim()) t.region = f.s3Region.trim()
      t.bucket = f.s3Bucket.trim()
      if (f.s3Prefix.trim()) t.prefix = f.s3Prefix.trim()
      t.secret_name = f.s3SecretName.trim()
      if (f.s3PathStyle) t.path_style = true
      return t
    },
    fromSpec: (f, t) => {
      f.s3Endpoint = str(t.endpoint)
      f.s3Region = str(t.region)
      f.s3Bucket = str(t.bucket)
      f.s3Prefix = str(t.prefix)
      f.s3PathStyle = t.path_style === true
      f.s3SecretName = str(t.secret_name)
    },
    validate: (f, errs) => {
      // The Hub checks the rest (bucket naming rules, region characters); these are the usual slips.
      if (!/^https?:\/\/[^/\s?#]+\/?$/i.test(f.s3Endpoint.trim())) errs['spec.target.endpoint'] = 'invalid_url'
      if (!f.s3Bucket.trim()) errs['spec.target.bucket'] = 'required'
      if (!f.s3SecretName.trim()) errs['spec.target.secret_name'] = 'required'
    },
    secretName: (f) => f.s3SecretName.trim(),
    endpoint: (f) => f.s3Endpoint.trim(),
  },
]

/** The kind of type; the first (local_dir) for a type this UI does not know. */
export function targetKind(type: string): TargetKind {
  return targetKinds.find((k) => k.type === type) ?? targetKinds[0]!
}

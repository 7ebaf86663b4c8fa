// The notification channels the web UI knows, in display order: the one list to extend when the
// Hub gains a channel (docs/development.md, "Adding a notification channel"). Everything else
// (the credential tabs, the destination forms, the channel switches and filters, the template
// editors and the job editor's destination pickers) is built from it.
import { defineAsyncComponent, type Component } from 'vue'

/** One template of a channel: its key in the settings document and the editor's height. */
export interface ChannelTemplate {
  key: string
  lines: number
}

/** The form state of a destination: whatever the channel's form edits. */
export type DestinationForm = Record<string, unknown>

export interface ChannelDef {
  /** The channel's name in the API (settings, queue, destinations, job specs). */
  name: string
  /** The /api/secrets/{kind} path segment of its destinations' credentials. */
  secretKind: string
  /** i18n key of the credential tab in Settings. */
  kindLabel: string
  /** Its templates; labels are i18n keys notifications.templateNames.<key>. */
  templates: ChannelTemplate[]
  /** The destination form: v-model is the form state, `fe(field)` the field's error props. */
  form: Component
  /** The form state of a new destination. */
  blank: () => DestinationForm
  /** The form state of a stored payload (GET /api/secrets/{kind}/{name}). */
  toForm: (stored: Record<string, unknown>) => DestinationForm
  /** The payload to PUT. */
  toPayload: (form: DestinationForm) => Record<string, unknown>
  /**
   * Only for the original's two channels: a job spec always carries their lists, empty with
   * mode inherit, as the original's did (the Hub's jobspec writes them the same way).
   */
  alwaysInSpec?: boolean
}

const str = (v: unknown, d = '') => (typeof v === 'string' ? v : d)

export const CHANNELS: readonly ChannelDef[] = [
  {
    name: 'wecom_bot',
    secretKind: 'wecom-bot',
    alwaysInSpec: true,
    kindLabel: 'settings.kinds.wecom',
    templates: [{ key: 'wecom_markdown', lines: 5 }],
    form: defineAsyncComponent(() => import('./WecomBotForm.vue')),
    blank: () => ({ webhook_url: '' }),
    toForm: (p) => ({ webhook_url: str(p.webhook_url) }),
    toPayload: (f) => ({ webhook_url: str(f.webhook_url).trim() }),
  },
  {
    name: 'email',
    secretKind: 'smtp',
    alwaysInSpec: true,
    kindLabel: 'settings.kinds.smtp',
    templates: [
      { key: 'email_subject', lines: 1 },
      { key: 'email_body', lines: 5 },
    ],
    form: defineAsyncComponent(() => import('./EmailForm.vue')),
    blank: () => ({ host: '', port: 587, username: '', password: '', from: '', to: '', tls: 'starttls' }),
    toForm: (p) => ({
      host: str(p.host),
      port: typeof p.port === 'number' ? p.port : 587,
      username: str(p.username),
      password: str(p.password),
      from: str(p.from),
      to: Array.isArray(p.to) ? p.to.join(', ') : '',
      tls: str(p.tls, 'starttls'),
      // Kept as stored: the form does not edit it, and a re-save must not drop it.
      ...(typeof p.ca_cert === 'string' && p.ca_cert ? { ca_cert: p.ca_cert } : {}),
    }),
    toPayload: (f) => ({
      host: str(f.host).trim(),
      port: f.port,
      username: str(f.username),
      password: str(f.password),
      from: str(f.from).trim(),
      to: str(f.to)
        .split(/[,\s]+/)
        .map((s) => s.trim())
        .filter(Boolean),
      tls: str(f.tls, 'starttls'),
      ...(f.ca_cert ? { ca_cert: f.ca_cert } : {}),
    }),
  },
  {
    name: 'webhook',
    secretKind: 'webhook',
    kindLabel: 'settings.kinds.webhook',
    templates: [],
    form: defineAsyncComponent(() => import('./WebhookForm.vue')),
    blank: () => ({ url: '', secret: '' }),
    toForm: (p) => ({ url: str(p.url), secret: str(p.secret) }),
    toPayload: (f) => ({ url: str(f.url).trim(), ...(f.secret ? { secret: f.secret } : {}) }),
  },
]

export const CHANNEL_NAMES: readonly string[] = CHANNELS.map((c) => c.name)

/** The lists a job spec with mode inherit carries (empty). */
export const INHERIT_SPEC_LISTS: readonly string[] = CHANNELS.filter((c) => c.alwaysInSpec).map((c) => c.name)

/** Every template key, in display order. */
export const TEMPLATE_KEYS: readonly string[] = CHANNELS.flatMap((c) => c.templates.map((t) => t.key))

/** The editor height of a template. */
export function templateLines(key: string): number {
  return CHANNELS.flatMap((c) => c.templates).find((t) => t.key === key)?.lines ?? 5
}

export function channelBySecretKind(kind: string): ChannelDef | undefined {
  return CHANNELS.find((c) => c.secretKind === kind)
}

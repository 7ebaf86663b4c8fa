// The notification channels module: the one list the pages build their channel UI from, and the
// destination forms it names.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { defineComponent, h } from 'vue'
import { NDialogProvider, NMessageProvider } from 'naive-ui'
import { i18n } from '@/i18n'
import en from '@/i18n/en'
import zh from '@/i18n/zh-CN'
import { mockFetch } from './fetchMock'
import SecretsPanel from '@/components/SecretsPanel.vue'
import { CHANNELS, CHANNEL_NAMES, TEMPLATE_KEYS } from '@/channels'

beforeEach(() => {
  setActivePinia(createPinia())
  i18n.global.locale.value = 'en'
})
afterEach(() => vi.unstubAllGlobals())

function lookup(messages: unknown, key: string): unknown {
  return key.split('.').reduce<unknown>((m, k) => (m && typeof m === 'object' ? (m as Record<string, unknown>)[k] : undefined), messages)
}

async function settle() {
  for (let i = 0; i < 5; i++) {
    await flushPromises()
    await new Promise((r) => setTimeout(r, 0))
  }
}

describe('notification channels', () => {
  it('lists the Hub’s channels with every label in both locales', () => {
    // The original's channels and templates stay, in this order; new ones come after.
    expect(CHANNEL_NAMES.slice(0, 3)).toEqual(['wecom_bot', 'email', 'webhook'])
    expect(TEMPLATE_KEYS.slice(0, 3)).toEqual(['wecom_markdown', 'email_subject', 'email_body'])
    for (const messages of [en, zh]) {
      for (const c of CHANNELS) {
        expect(typeof lookup(messages, `channels.${c.name}`), `channels.${c.name}`).toBe('string')
        expect(typeof lookup(messages, c.kindLabel), c.kindLabel).toBe('string')
        for (const tpl of c.templates) expect(typeof lookup(messages, `notifications.tpl.${tpl.key}`), tpl.key).toBe('string')
      }
    }
  })

  it('round-trips each channel’s stored destination through its form unchanged', () => {
    const stored: Record<string, Record<string, unknown>> = {
      wecom_bot: { webhook_url: 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k' },
      email: { host: 'smtp.example.com', port: 465, username: 'u', password: 'p', from: 'b@example.com', to: ['a@example.com', 'c@example.com'], tls: 'implicit', ca_cert: '-----BEGIN CERTIFICATE-----\n…' },
      webhook: { url: 'https://hooks.example.com/x', secret: 's' },
    }
    for (const c of CHANNELS) expect(c.toPayload(c.toForm(stored[c.name]!)), c.name).toEqual(stored[c.name])
  })

  it('edits an SMTP destination and saves it whole, its CA certificate included', async () => {
    const stored = { host: 'smtp.example.com', port: 587, username: 'u', password: 'p', from: 'b@example.com', to: ['a@example.com'], tls: 'starttls', ca_cert: 'PEM' }
    const calls = mockFetch({
      'GET /api/secrets/smtp': { body: [{ name: 'ops', updated_at: 1 }] },
      'GET /api/secrets/smtp/ops': { body: stored },
      'PUT /api/secrets/smtp/ops': { status: 204 },
    })
    const Host = defineComponent({ render: () => h(NMessageProvider, () => h(NDialogProvider, () => h(SecretsPanel, { kind: 'smtp' }))) })
    const w = mount(Host, { global: { plugins: [i18n] }, attachTo: document.body })
    await settle()
    const edit = [...document.querySelectorAll('button')].find((b) => b.textContent?.trim() === 'Edit')!
    edit.click()
    await settle()
    // The form is loaded on demand (defineAsyncComponent).
    await vi.waitFor(() => expect([...document.querySelectorAll('input')].some((i) => i.value === 'smtp.example.com')).toBe(true), { timeout: 10_000 })
    ;(document.querySelector('[data-testid="secret-save"]') as HTMLElement).click()
    await settle()
    const put = calls.find((c) => c.method === 'PUT')!
    expect(put.url).toBe('/api/secrets/smtp/ops')
    expect(put.body).toEqual(stored)
    w.unmount()
  })
})

import { createI18n } from 'vue-i18n'
import en from './en'
import zhCN from './zh-CN'

export const LOCALES = [
  { label: 'English', value: 'en' },
  { label: '简体中文', value: 'zh-CN' },
]
const STORAGE_KEY = 'bastion.locale'

export function detectLocale(stored: string | null, languages: readonly string[]): 'en' | 'zh-CN' {
  if (stored === 'en' || stored === 'zh-CN') return stored
  for (const l of languages) {
    if (l.toLowerCase().startsWith('zh')) return 'zh-CN'
    if (l.toLowerCase().startsWith('en')) return 'en'
  }
  return 'en'
}

function storedLocale(): string | null {
  try {
    return localStorage.getItem(STORAGE_KEY)
  } catch {
    return null
  }
}

export const i18n = createI18n({
  legacy: false,
  locale: detectLocale(storedLocale(), typeof navigator !== 'undefined' ? navigator.languages ?? [] : []),
  fallbackLocale: 'en',
  messages: { en, 'zh-CN': zhCN },
})

export function setLocale(value: string): void {
  const l = value === 'zh-CN' ? 'zh-CN' : 'en'
  i18n.global.locale.value = l
  document.documentElement.lang = l
  try {
    localStorage.setItem(STORAGE_KEY, l)
  } catch {
    // private mode: the choice lasts for this page only
  }
}

// The colour theme: light, dark or the system's, remembered per browser. index.html applies the
// stored choice before the first paint (same key and rule as here) so a dark page never flashes white.
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'

export type ThemeMode = 'light' | 'dark' | 'system'
export const THEME_KEY = 'bastion.theme'

export function parseMode(v: string | null): ThemeMode {
  return v === 'light' || v === 'dark' ? v : 'system'
}

/** The theme actually shown for a mode, given whether the system prefers dark. */
export function resolveTheme(mode: ThemeMode, systemDark: boolean): 'light' | 'dark' {
  return mode === 'system' ? (systemDark ? 'dark' : 'light') : mode
}

function darkQuery(): MediaQueryList | null {
  return typeof window !== 'undefined' && window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null
}

export const useThemeStore = defineStore('theme', () => {
  let stored: string | null = null
  try {
    stored = localStorage.getItem(THEME_KEY)
  } catch {
    // storage blocked: follow the system
  }
  const mode = ref<ThemeMode>(parseMode(stored))
  const mq = darkQuery()
  const systemDark = ref(mq?.matches ?? false)
  mq?.addEventListener?.('change', (e) => {
    systemDark.value = e.matches
    apply()
  })
  const resolved = computed(() => resolveTheme(mode.value, systemDark.value))

  function apply() {
    const el = document.documentElement
    el.dataset.theme = resolved.value
    el.style.colorScheme = resolved.value
  }
  function setMode(m: ThemeMode) {
    mode.value = m
    try {
      if (m === 'system') localStorage.removeItem(THEME_KEY)
      else localStorage.setItem(THEME_KEY, m)
    } catch {
      // private mode: the choice lasts for this page only
    }
    apply()
  }
  apply()
  return { mode, resolved, setMode }
})

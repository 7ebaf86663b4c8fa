import { onBeforeUnmount, ref } from 'vue'

/** True on phone-sized screens (below 768 px), kept current on resize. */
export function useMobile() {
  const q = window.matchMedia('(max-width: 767px)')
  const mobile = ref(q.matches)
  const on = (e: MediaQueryListEvent) => (mobile.value = e.matches)
  q.addEventListener('change', on)
  onBeforeUnmount(() => q.removeEventListener('change', on))
  return mobile
}

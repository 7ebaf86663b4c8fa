// Applies the saved theme before the first paint (same rule as src/stores/theme.ts): 'light' or
// 'dark' from localStorage 'bastion.theme', else the system's preference.
;(function () {
  try {
    var m = localStorage.getItem('bastion.theme')
    var d = m === 'dark' || (m !== 'light' && window.matchMedia('(prefers-color-scheme: dark)').matches)
    document.documentElement.dataset.theme = d ? 'dark' : 'light'
    document.documentElement.style.colorScheme = d ? 'dark' : 'light'
  } catch (e) {
    // storage blocked: the app applies the system theme when it starts
  }
})()

/** A WebDAV folder picked in the browser, appended to the base URL it was browsed from. */
export function joinUrl(base: string, path: string): string {
  if (!path || path === '/') return base
  return base.replace(/\/+$/, '') + '/' + path.replace(/^\/+/, '').replace(/\/+$/, '')
}

/** The parent of a slash-separated path; '' and '/' have none. */
export function parentPath(p: string, root = '/'): string {
  const trimmed = p.replace(/\/+$/, '')
  const i = trimmed.lastIndexOf('/')
  if (i < 0) return root === '/' ? '/' : ''
  return i === 0 ? '/' : trimmed.slice(0, i)
}

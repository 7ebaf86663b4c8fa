/** The exact command an operator runs on a new host to enroll it as an agent (agent-protocol.md §1). */
export function enrollCommand(hubUrl: string, token: string, name: string): string {
  const q = (s: string) => (/^[A-Za-z0-9._:/@+=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`)
  const parts = ['bastion', 'agent', '--hub-url', q(hubUrl.replace(/\/+$/, '')), '--enroll-token', q(token)]
  if (name.trim()) parts.push('--name', q(name.trim()))
  return parts.join(' ')
}

// Client-side template preview (notifications.md §5): plain substring replacement of {{name}} with
// sample values, exactly what the Hub does, so the preview needs no round trip.
export const SAMPLE_VARS: Record<string, string> = {
  title: 'Bastion backup succeeded',
  status: 'success',
  status_text: 'Succeeded',
  job_id: '6f1c2a1e-0000-4000-8000-000000000001',
  job_name: 'nightly-web',
  run_id: '9a7b3c2d-0000-4000-8000-000000000002',
  started_at: '2026-03-10T02:00:00Z',
  ended_at: '2026-03-10T02:03:12Z',
  target_type: 'local_dir',
  target_location: '/srv/backups/6f1c…/9a7b…',
  target: 'local_dir /srv/backups/6f1c…/9a7b…',
  error: '-',
  target_line_wecom: '> Target: local_dir /srv/backups/6f1c…/9a7b…\n',
  error_line_wecom: '',
  target_line_email: 'Target: local_dir /srv/backups/6f1c…/9a7b…\n',
  error_line_email: '',
  consistency_changed_total: '0',
  consistency_line_wecom: '',
  consistency_line_email: '',
}

export function renderTemplate(tpl: string, vars: Record<string, string> = SAMPLE_VARS): string {
  let out = tpl
  for (const [k, v] of Object.entries(vars)) out = out.split(`{{${k}}}`).join(v)
  return out
}

/** Placeholders a template uses that the Hub does not know (typos show up before saving). */
export function unknownPlaceholders(tpl: string, vars: Record<string, string> = SAMPLE_VARS): string[] {
  const found = new Set<string>()
  for (const m of tpl.matchAll(/\{\{\s*([a-zA-Z0-9_]+)\s*\}\}/g)) if (!(m[1]! in vars)) found.add(m[1]!)
  return [...found]
}

-- Go (security issue 11): a stored WebDAV credential may be sent only to the servers it was saved
-- for. Each row allows one origin (scheme://host:port) for one secret; a secret without rows is
-- "unbound" and no listing, job or restore may use it until an admin binds it. The payload stays
-- encrypted in secrets; the origin is not a secret, and keeping it beside the row lets this
-- migration bind existing credentials without the master key.
CREATE TABLE secret_origins (
  node_id     TEXT    NOT NULL,
  secret_kind TEXT    NOT NULL,
  secret_name TEXT    NOT NULL,
  origin      TEXT    NOT NULL,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (secret_kind, node_id, secret_name, origin),
  FOREIGN KEY (secret_kind, node_id, secret_name) REFERENCES secrets(kind, node_id, name) ON DELETE CASCADE
) WITHOUT ROWID;

-- Bind every existing WebDAV credential to the origins its jobs (v1 and v2 spec shapes, archived
-- ones too) and its stored snapshots already use: a credential used on several servers gets them
-- all. The value is scheme://authority, lowercased; the Hub canonicalizes it again on read (default
-- port made explicit), so the SQL need not parse ports.
WITH specs(node_id, spec) AS (
  SELECT COALESCE(NULLIF(trim(agent_id), ''), 'hub'),
         CASE WHEN json_valid(spec_json) THEN spec_json ELSE '{}' END
  FROM jobs
),
snaps(node_id, snap) AS (
  SELECT node_id, CASE WHEN json_valid(target_snapshot_json) THEN target_snapshot_json ELSE '{}' END
  FROM run_artifacts WHERE target_type = 'webdav'
  UNION ALL
  SELECT node_id, CASE WHEN json_valid(target_snapshot_json) THEN target_snapshot_json ELSE '{}' END
  FROM artifact_delete_tasks WHERE target_type = 'webdav'
  UNION ALL
  SELECT node_id, CASE WHEN json_valid(target_snapshot_json) THEN target_snapshot_json ELSE '{}' END
  FROM incomplete_cleanup_tasks WHERE target_type = 'webdav'
),
refs(node_id, secret_name, base_url) AS (
  -- v1: {"type": ..., "target": {"type": "webdav", "base_url", "secret_name"}}
  SELECT node_id, json_extract(spec, '$.target.secret_name'), json_extract(spec, '$.target.base_url')
  FROM specs
  WHERE json_extract(spec, '$.target.type') = 'webdav' AND json_type(spec, '$.target.base_url') = 'text'
  UNION
  -- v2: {"target": {"type": "webdav", "config": {"base_url"}, "auth_refs": {k: {secret_type, secret_name}}}}
  SELECT s.node_id, trim(json_extract(r.value, '$.secret_name')), json_extract(s.spec, '$.target.config.base_url')
  FROM specs s, json_each(s.spec, '$.target.auth_refs') r
  WHERE json_extract(s.spec, '$.target.type') = 'webdav' AND json_type(s.spec, '$.target.config.base_url') = 'text'
    AND r.type = 'object' AND trim(json_extract(r.value, '$.secret_type')) = 'webdav'
  UNION
  -- stored snapshots: {"node_id", "target": {"type": "webdav", "base_url", "secret_name"}}
  SELECT COALESCE(NULLIF(json_extract(snap, '$.node_id'), ''), node_id),
         json_extract(snap, '$.target.secret_name'), json_extract(snap, '$.target.base_url')
  FROM snaps
  WHERE json_type(snap, '$.target.base_url') = 'text'
),
urls(node_id, secret_name, scheme, rest) AS (
  SELECT node_id, secret_name, lower(substr(trim(base_url), 1, instr(trim(base_url), '://') - 1)),
         substr(trim(base_url), instr(trim(base_url), '://') + 3)
  FROM refs WHERE instr(trim(base_url), '://') > 1 AND secret_name IS NOT NULL
),
cut1(node_id, secret_name, scheme, rest) AS (
  SELECT node_id, secret_name, scheme,
         CASE WHEN instr(rest, '/') > 0 THEN substr(rest, 1, instr(rest, '/') - 1) ELSE rest END
  FROM urls WHERE scheme IN ('http', 'https')
),
cut2(node_id, secret_name, scheme, rest) AS (
  SELECT node_id, secret_name, scheme,
         CASE WHEN instr(rest, '?') > 0 THEN substr(rest, 1, instr(rest, '?') - 1) ELSE rest END
  FROM cut1
),
authority(node_id, secret_name, scheme, host) AS (
  SELECT node_id, secret_name, scheme,
         lower(CASE WHEN instr(rest, '#') > 0 THEN substr(rest, 1, instr(rest, '#') - 1) ELSE rest END)
  FROM cut2
)
INSERT OR IGNORE INTO secret_origins(node_id, secret_kind, secret_name, origin, created_at)
SELECT DISTINCT a.node_id, 'webdav', a.secret_name, a.scheme || '://' || a.host, CAST(strftime('%s', 'now') AS INTEGER)
FROM authority a
JOIN secrets s ON s.kind = 'webdav' AND s.node_id = a.node_id AND s.name = a.secret_name
WHERE a.host <> '';

-- Sessions are listed and revoked by their owner (GET/DELETE /api/sessions). The id is the
-- SHA-256 of the cookie and never leaves the Hub; public_id is a separate random name for the API.
-- last_seen_at is written at most once a minute; client_ip and user_agent are what the login
-- request showed, for telling sessions apart.
ALTER TABLE sessions ADD COLUMN public_id TEXT;
ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER;
ALTER TABLE sessions ADD COLUMN client_ip TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
UPDATE sessions SET public_id = lower(hex(randomblob(12))) WHERE public_id IS NULL;
CREATE UNIQUE INDEX sessions_public_id ON sessions(public_id);
CREATE INDEX sessions_user_created ON sessions(user_id, created_at);

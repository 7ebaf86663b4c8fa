-- API tokens authorise scripts (Authorization: Bearer). token_hash is the SHA-256 of the token,
-- which is shown once and never stored. A token's role is at most its creator's; it dies with its
-- creator. Revoking deletes the row. last_used_at is written at most once a minute.
CREATE TABLE api_tokens (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  name         TEXT    NOT NULL,
  token_hash   TEXT    NOT NULL UNIQUE,
  role         TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
  created_by   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER,
  last_used_at INTEGER
);
CREATE INDEX api_tokens_created_by ON api_tokens(created_by);

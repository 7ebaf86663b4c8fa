-- Users get a role: admin (everything), operator (run, cancel, restore, verify; no configuration,
-- secrets, users or tokens), viewer (read only). Every account so far was an administrator.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'operator', 'viewer'));
CREATE INDEX users_role ON users(role);

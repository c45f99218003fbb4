-- Users of a business backend, who connect with a JWT: `external_id` is the token's `sub` (the business's own
-- user id), unique; NULL for WeChat and development users. IF NOT EXISTS: the server API adds the same column.
ALTER TABLE users ADD COLUMN IF NOT EXISTS external_id TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS users_by_external_id ON users(external_id);

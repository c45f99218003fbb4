-- Users of a business backend, who connect with a JWT: `external_id` is the token's `sub` (the business's own
-- user id), unique; NULL for WeChat and development users.
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_by_external_id ON users(external_id);

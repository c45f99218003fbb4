-- The server API (docs/server-api.md): API keys, users a business backend creates and looks up by its own id,
-- bans, per-room mutes, the system account, archived rooms.
-- API keys: only the SHA-256 of a key is kept; a revoked key stays listed (revoked_at set) and never matches.
CREATE TABLE IF NOT EXISTS api_keys (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    key_hash   BLOB NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
-- The business's own id of a user (unique when set), its JSON `custom` data, and when it was banned.
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN custom TEXT;
ALTER TABLE users ADD COLUMN banned_at INTEGER;
-- Set on the one system account (`system`), which sends system messages; created on first use.
ALTER TABLE users ADD COLUMN system_name TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS users_by_external_id ON users(external_id);
CREATE UNIQUE INDEX IF NOT EXISTS users_by_system_name ON users(system_name);
-- A member muted in a room cannot send until this time (NULL: not muted).
ALTER TABLE members ADD COLUMN muted_until INTEGER;
-- When the server API archived (deleted) a room: no members, no owner, invite-only; history kept.
ALTER TABLE conversations ADD COLUMN archived_at INTEGER;

-- Login hardening (issue 16). WeChat's session_key is no longer stored: the values kept so far are erased, and a
-- login erases the value of its user. The column stays, so that a node of the previous version still running
-- during a rolling upgrade can write it; its user's next login on a new node erases it.
UPDATE users SET session_key = NULL WHERE session_key IS NOT NULL;
-- Expired sessions are deleted periodically, oldest expiry first.
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions(expires_at);
-- Single-use connect tickets (POST /v1/ws/ticket): at most one per session, found by the ticket's SHA-256.
CREATE TABLE IF NOT EXISTS connect_tickets (
    token_hash  BLOB PRIMARY KEY,
    ticket_hash BLOB NOT NULL UNIQUE,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS connect_tickets_by_expiry ON connect_tickets(expires_at);

-- Login hardening (issue 16). WeChat's session_key is no longer stored: the values kept so far are erased (the
-- column stays, so that a node of the previous version still running during an upgrade can write it).
UPDATE users SET session_key = NULL WHERE session_key IS NOT NULL;
-- Expired sessions are deleted periodically, oldest expiry first.
CREATE INDEX sessions_by_expiry ON sessions(expires_at);
-- Single-use connect tickets (POST /v1/ws/ticket): at most one per session, found by the ticket's SHA-256.
CREATE TABLE connect_tickets (
    token_hash  BYTEA PRIMARY KEY,
    ticket_hash BYTEA NOT NULL UNIQUE,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX connect_tickets_by_expiry ON connect_tickets(expires_at);

-- Profiles, people search, recall (issue 20).
-- A user's avatar: an https URL or a xindao media path; NULL when unset.
ALTER TABLE users ADD COLUMN avatar_url TEXT;
-- `user_search` is a case-insensitive (ASCII) prefix search on display names: a range scan of this index
-- (`display_name >= ? COLLATE NOCASE AND display_name < ? COLLATE NOCASE`), never a table scan.
CREATE INDEX IF NOT EXISTS users_by_name_nocase ON users(display_name COLLATE NOCASE, id);
-- A recalled or removed message keeps its row (its seq stays taken) with its content erased: `state` says why.
ALTER TABLE messages ADD COLUMN state TEXT CHECK (state IN ('recalled', 'removed'));
-- Delete-for-me: the messages one user hid, for all of their devices.
CREATE TABLE IF NOT EXISTS hidden_messages (
    user_id         INTEGER NOT NULL REFERENCES users(id),
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    seq             INTEGER NOT NULL,
    hidden_at       INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id, seq)
) WITHOUT ROWID;

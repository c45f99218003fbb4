-- Profiles, people search, recall (issue 20).
-- A user's avatar: an https URL or a xindao media path; NULL when unset.
ALTER TABLE users ADD COLUMN IF NOT EXISTS avatar_url TEXT;
-- `user_search` is a case-insensitive prefix search on display names: a byte-wise range scan of this index
-- (`lower(display_name) ~>=~ lower($1) AND lower(display_name) ~<~ lower($1) || U+10FFFF`), whatever the
-- database's collation, never a table scan.
CREATE INDEX IF NOT EXISTS users_by_name_prefix ON users (lower(display_name) text_pattern_ops, id);
-- A recalled or removed message keeps its row (its seq stays taken) with its content erased: `state` says why.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS state TEXT CHECK (state IN ('recalled', 'removed'));
-- Delete-for-me: the messages one user hid, for all of their devices.
CREATE TABLE IF NOT EXISTS hidden_messages (
    user_id         BIGINT NOT NULL REFERENCES users(id),
    conversation_id BIGINT NOT NULL REFERENCES conversations(id),
    seq             BIGINT NOT NULL,
    hidden_at       BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation_id, seq)
);

-- WeChat: the access token shared by the nodes (one row per app), one-time subscribe-message grants, and
-- when each user was last notified about each conversation (coalescing). Times in ms since the epoch.
CREATE TABLE IF NOT EXISTS wechat_tokens (
    appid       TEXT PRIMARY KEY,
    token       TEXT NOT NULL,
    use_until   INTEGER NOT NULL,
    lease_until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wechat_grants (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    template_id TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (user_id, template_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wechat_notified (
    user_id         INTEGER NOT NULL REFERENCES users(id),
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    at              INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;

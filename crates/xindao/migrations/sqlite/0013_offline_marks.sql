-- When each user was last announced by a `user.offline_message` webhook event about each conversation: the
-- coalescing window, shared by every node through the store (the marks of WeChat notifications are in
-- wechat_notified). Rows older than the window mean nothing and are deleted by housekeeping. Ms since the epoch.
CREATE TABLE IF NOT EXISTS webhook_offline_notified (
    user_id         INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_offline_notified_at ON webhook_offline_notified (at);
CREATE INDEX IF NOT EXISTS wechat_notified_at ON wechat_notified (at);

//! SQLite side of [`WeChatStore`]: the shared access token row, openids, grants and notification marks.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{map_sqlite, SqliteStore};
use crate::error::Result;
use crate::model::{ConversationId, Millis, UserId};
use crate::store::wechat::{NotifyTake, StoredToken, WeChatStore};

#[async_trait]
impl WeChatStore for SqliteStore {
    async fn wechat_token(&self, appid: &str) -> Result<Option<StoredToken>> {
        let appid = appid.to_string();
        self.read_quick(move |conn| {
            conn.prepare_cached(
                "SELECT token, use_until, lease_until FROM wechat_tokens WHERE appid = ?1",
            )?
            .query_row([appid], |row| {
                Ok(StoredToken {
                    token: row.get(0)?,
                    use_until: row.get(1)?,
                    lease_until: row.get(2)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn wechat_token_claim(
        &self,
        appid: &str,
        seen_use_until: Millis,
        now: Millis,
        lease_until: Millis,
    ) -> Result<bool> {
        let appid = appid.to_string();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO wechat_tokens (appid, token, use_until, lease_until) VALUES (?1, '', 0, 0)
                 ON CONFLICT (appid) DO NOTHING",
                [&appid],
            )
            .map_err(map_sqlite)?;
            let won = conn
                .execute(
                    "UPDATE wechat_tokens SET lease_until = ?4
                     WHERE appid = ?1 AND use_until = ?2 AND lease_until < ?3",
                    params![appid, seen_use_until, now, lease_until],
                )
                .map_err(map_sqlite)?;
            Ok(won == 1)
        })
        .await
    }

    async fn wechat_token_put(&self, appid: &str, token: &str, use_until: Millis) -> Result<()> {
        let (appid, token) = (appid.to_string(), token.to_string());
        self.write(move |conn| {
            conn.execute(
                "UPDATE wechat_tokens SET token = ?2, use_until = ?3, lease_until = 0 WHERE appid = ?1",
                params![appid, token, use_until],
            )
            .map(|_| ())
            .map_err(map_sqlite)
        })
        .await
    }

    async fn user_openid(&self, user: UserId) -> Result<Option<String>> {
        self.read_quick(move |conn| {
            conn.prepare_cached("SELECT openid FROM users WHERE id = ?1")?
                .query_row([user], |row| row.get::<_, Option<String>>(0))
                .optional()
                .map(Option::flatten)
        })
        .await
    }

    async fn notify_grant(
        &self,
        user: UserId,
        template: &str,
        count: i64,
        max: i64,
    ) -> Result<i64> {
        let template = template.to_string();
        self.write(move |conn| {
            conn.query_row(
                "INSERT INTO wechat_grants (user_id, template_id, count) VALUES (?1, ?2, MIN(?3, ?4))
                 ON CONFLICT (user_id, template_id)
                 DO UPDATE SET count = MIN(count + excluded.count, ?4)
                 RETURNING count",
                params![user, template, count, max],
                |row| row.get(0),
            )
            .map_err(map_sqlite)
        })
        .await
    }

    async fn notify_take(
        &self,
        user: UserId,
        conversation: ConversationId,
        template: &str,
        now: Millis,
        window_ms: i64,
    ) -> Result<NotifyTake> {
        let template = template.to_string();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(map_sqlite)?;
            let marked = tx
                .execute(
                    "INSERT INTO wechat_notified (user_id, conversation_id, at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, conversation_id) DO UPDATE SET at = excluded.at
                     WHERE wechat_notified.at <= ?3 - ?4",
                    params![user, conversation, now, window_ms],
                )
                .map_err(map_sqlite)?;
            if marked == 0 {
                return Ok(NotifyTake::InWindow);
            }
            let taken = tx
                .execute(
                    "UPDATE wechat_grants SET count = count - 1
                     WHERE user_id = ?1 AND template_id = ?2 AND count > 0",
                    params![user, template],
                )
                .map_err(map_sqlite)?;
            if taken == 0 {
                // No grant: the mark is rolled back with the transaction, so a later grant is used at once.
                return Ok(NotifyTake::NoGrant);
            }
            tx.commit().map_err(map_sqlite)?;
            Ok(NotifyTake::Taken)
        })
        .await
    }

    async fn notify_give_back(&self, user: UserId, template: &str) -> Result<()> {
        let template = template.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE wechat_grants SET count = count + 1 WHERE user_id = ?1 AND template_id = ?2",
                params![user, template],
            )
            .map(|_| ())
            .map_err(map_sqlite)
        })
        .await
    }

    async fn notify_clear(&self, user: UserId, template: &str) -> Result<()> {
        let template = template.to_string();
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM wechat_grants WHERE user_id = ?1 AND template_id = ?2",
                params![user, template],
            )
            .map(|_| ())
            .map_err(map_sqlite)
        })
        .await
    }
}

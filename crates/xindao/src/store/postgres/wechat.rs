//! PostgreSQL side of [`WeChatStore`]: the access token row the nodes of a cluster share (claimed by one
//! node at a time for a refresh), openids, grants and notification marks.

use async_trait::async_trait;

use super::rows::map_pg;
use super::PostgresStore;
use crate::error::Result;
use crate::model::{ConversationId, Millis, UserId};
use crate::store::wechat::{NotifyTake, StoredToken, WeChatStore};

#[async_trait]
impl WeChatStore for PostgresStore {
    async fn wechat_token(&self, appid: &str) -> Result<Option<StoredToken>> {
        let row = self
            .query_opt(
                "SELECT token, use_until, lease_until FROM wechat_tokens WHERE appid = $1",
                &[&appid],
            )
            .await?;
        Ok(row.map(|row| StoredToken {
            token: row.get(0),
            use_until: row.get(1),
            lease_until: row.get(2),
        }))
    }

    async fn wechat_token_claim(
        &self,
        appid: &str,
        seen_use_until: Millis,
        now: Millis,
        lease_until: Millis,
    ) -> Result<bool> {
        self.query(
            "INSERT INTO wechat_tokens (appid, token, use_until, lease_until) VALUES ($1, '', 0, 0)
             ON CONFLICT (appid) DO NOTHING",
            &[&appid],
        )
        .await?;
        let won = self
            .query(
                "UPDATE wechat_tokens SET lease_until = $4
                 WHERE appid = $1 AND use_until = $2 AND lease_until < $3 RETURNING appid",
                &[&appid, &seen_use_until, &now, &lease_until],
            )
            .await?;
        Ok(won.len() == 1)
    }

    async fn wechat_token_put(&self, appid: &str, token: &str, use_until: Millis) -> Result<()> {
        self.query(
            "UPDATE wechat_tokens SET token = $2, use_until = $3, lease_until = 0 WHERE appid = $1",
            &[&appid, &token, &use_until],
        )
        .await
        .map(|_| ())
    }

    async fn user_openid(&self, user: UserId) -> Result<Option<String>> {
        let row = self
            .query_opt("SELECT openid FROM users WHERE id = $1", &[&user])
            .await?;
        Ok(row.and_then(|row| row.get::<_, Option<String>>(0)))
    }

    async fn notify_grant(
        &self,
        user: UserId,
        template: &str,
        count: i64,
        max: i64,
    ) -> Result<i64> {
        let row = self
            .query_opt(
                "INSERT INTO wechat_grants (user_id, template_id, count) VALUES ($1, $2, LEAST($3::BIGINT, $4::BIGINT))
                 ON CONFLICT (user_id, template_id)
                 DO UPDATE SET count = LEAST(wechat_grants.count + excluded.count, $4::BIGINT)
                 RETURNING count",
                &[&user, &template, &count, &max],
            )
            .await?;
        Ok(row.map_or(0, |row| row.get(0)))
    }

    async fn notify_take(
        &self,
        user: UserId,
        conversation: ConversationId,
        template: &str,
        now: Millis,
        window_ms: i64,
    ) -> Result<NotifyTake> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        // The conditional upsert takes the row's lock: a second node's mark waits for this transaction.
        let marked = tx
            .execute(
                "INSERT INTO wechat_notified (user_id, conversation_id, at) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id, conversation_id) DO UPDATE SET at = excluded.at
                 WHERE wechat_notified.at <= $3::BIGINT - $4::BIGINT",
                &[&user, &conversation, &now, &window_ms],
            )
            .await
            .map_err(map_pg)?;
        if marked == 0 {
            return Ok(NotifyTake::InWindow);
        }
        let taken = tx
            .execute(
                "UPDATE wechat_grants SET count = count - 1
                 WHERE user_id = $1 AND template_id = $2 AND count > 0",
                &[&user, &template],
            )
            .await
            .map_err(map_pg)?;
        if taken == 0 {
            // No grant: the mark is rolled back (dropping the transaction), so a later grant is used at once.
            return Ok(NotifyTake::NoGrant);
        }
        tx.commit().await.map_err(map_pg)?;
        Ok(NotifyTake::Taken)
    }

    async fn notify_give_back(&self, user: UserId, template: &str) -> Result<()> {
        self.query(
            "UPDATE wechat_grants SET count = count + 1 WHERE user_id = $1 AND template_id = $2",
            &[&user, &template],
        )
        .await
        .map(|_| ())
    }

    async fn notify_clear(&self, user: UserId, template: &str) -> Result<()> {
        self.query(
            "DELETE FROM wechat_grants WHERE user_id = $1 AND template_id = $2",
            &[&user, &template],
        )
        .await
        .map(|_| ())
    }
}

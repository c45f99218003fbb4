//! PostgreSQL side of [`MediaStore`]: the media table and the conversations each medium was sent to.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::rows::map_pg;
use super::PostgresStore;
use crate::error::Result;
use crate::model::{now_millis, ConversationId, Media, MediaKind, Millis, UserId};
use crate::store::media::{
    MediaStore, MEDIA_COLUMNS, MEDIA_MARK_DELETED_SQL, MEDIA_REF_DROP_SQL, MEDIA_USE_DELETE_SQL,
    MEDIA_VISIBLE_SQL,
};

fn read_media(row: &Row) -> Media {
    Media {
        id: row.get(0),
        owner_id: row.get(1),
        kind: MediaKind::from_stored(row.get(2)),
        mime: row.get(3),
        size: row.get(4),
        width: row.get(5),
        height: row.get(6),
        duration_ms: row.get(7),
        name: row.get(8),
        storage_key: row.get(9),
        thumb_key: row.get(10),
        thumb_mime: row.get(11),
        thumb_size: row.get(12),
        created_at: row.get(13),
        public: row.get(14),
    }
}

#[async_trait]
impl MediaStore for PostgresStore {
    async fn media_insert(&self, m: &Media) -> Result<()> {
        self.query(
            &format!(
                "INSERT INTO media ({MEDIA_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ),
            &[
                &m.id,
                &m.owner_id,
                &m.kind.as_str(),
                &m.mime,
                &m.size,
                &m.width,
                &m.height,
                &m.duration_ms,
                &m.name,
                &m.storage_key,
                &m.thumb_key,
                &m.thumb_mime,
                &m.thumb_size,
                &m.created_at,
                &m.public,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn media(&self, id: &str) -> Result<Option<Media>> {
        let row = self
            .query_opt(
                &format!("SELECT {MEDIA_COLUMNS} FROM media WHERE id = $1 AND deleted_at IS NULL"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(read_media))
    }

    async fn media_uploaded_since(&self, owner: UserId, since: Millis) -> Result<i64> {
        let row = self
            .query_opt(
                "SELECT COALESCE(SUM(size), 0)::BIGINT FROM media WHERE owner_id = $1 AND created_at >= $2",
                &[&owner, &since],
            )
            .await?;
        Ok(row.map_or(0, |row| row.get(0)))
    }

    async fn media_attach(&self, id: &str, conversation: ConversationId, seq: i64) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        tx.execute(
            "INSERT INTO media_refs (media_id, conversation_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&id, &conversation],
        )
        .await
        .map_err(map_pg)?;
        tx.execute(
            "INSERT INTO media_uses (conversation_id, seq, media_id) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&conversation, &seq, &id],
        )
        .await
        .map_err(map_pg)?;
        tx.commit().await.map_err(map_pg)
    }

    async fn media_release(&self, conversation: ConversationId, seq: i64) -> Result<Option<Media>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let Some(row) = tx
            .query_opt(MEDIA_USE_DELETE_SQL, &[&conversation, &seq])
            .await
            .map_err(map_pg)?
        else {
            return Ok(None);
        };
        let id: String = row.get(0);
        // Taking the medium's row first makes two releases of one medium take turns, so that the last
        // one out sees no use left.
        tx.execute("SELECT 1 FROM media WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .map_err(map_pg)?;
        tx.execute(MEDIA_REF_DROP_SQL, &[&id, &conversation])
            .await
            .map_err(map_pg)?;
        let deleted = tx
            .execute(MEDIA_MARK_DELETED_SQL, &[&id, &now_millis()])
            .await
            .map_err(map_pg)?;
        let media = if deleted > 0 {
            tx.query_opt(
                &format!("SELECT {MEDIA_COLUMNS} FROM media WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(map_pg)?
            .as_ref()
            .map(read_media)
        } else {
            None
        };
        tx.commit().await.map_err(map_pg)?;
        Ok(media)
    }

    async fn media_visible(&self, id: &str, user: UserId) -> Result<bool> {
        let row = self.query_opt(MEDIA_VISIBLE_SQL, &[&id, &user]).await?;
        Ok(row.is_some_and(|row| row.get(0)))
    }
}

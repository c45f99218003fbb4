//! SQLite side of [`MediaStore`]: the media table and the conversations each medium was sent to.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use super::{map_sqlite, SqliteStore};
use crate::error::Result;
use crate::model::{now_millis, ConversationId, Media, MediaKind, Millis, UserId};
use crate::store::media::{
    MediaStore, MEDIA_COLUMNS, MEDIA_MARK_DELETED_SQL, MEDIA_REF_DROP_SQL, MEDIA_USE_DELETE_SQL,
    MEDIA_VISIBLE_SQL,
};

fn read_media(row: &Row<'_>) -> rusqlite::Result<Media> {
    Ok(Media {
        id: row.get(0)?,
        owner_id: row.get(1)?,
        kind: MediaKind::from_stored(&row.get::<_, String>(2)?),
        mime: row.get(3)?,
        size: row.get(4)?,
        width: row.get(5)?,
        height: row.get(6)?,
        duration_ms: row.get(7)?,
        name: row.get(8)?,
        storage_key: row.get(9)?,
        thumb_key: row.get(10)?,
        thumb_mime: row.get(11)?,
        thumb_size: row.get(12)?,
        created_at: row.get(13)?,
        public: row.get(14)?,
    })
}

#[async_trait]
impl MediaStore for SqliteStore {
    async fn media_insert(&self, media: &Media) -> Result<()> {
        let m = media.clone();
        self.write(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO media ({MEDIA_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                ),
                params![
                    m.id,
                    m.owner_id,
                    m.kind.as_str(),
                    m.mime,
                    m.size,
                    m.width,
                    m.height,
                    m.duration_ms,
                    m.name,
                    m.storage_key,
                    m.thumb_key,
                    m.thumb_mime,
                    m.thumb_size,
                    m.created_at,
                    m.public
                ],
            )
            .map(|_| ())
            .map_err(map_sqlite)
        })
        .await
    }

    async fn media(&self, id: &str) -> Result<Option<Media>> {
        let id = id.to_string();
        self.read_quick(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {MEDIA_COLUMNS} FROM media WHERE id = ?1 AND deleted_at IS NULL"
            ))?
            .query_row([id], read_media)
            .optional()
        })
        .await
    }

    async fn media_uploaded_since(&self, owner: UserId, since: Millis) -> Result<i64> {
        self.read_quick(move |conn| {
            conn.prepare_cached(
                "SELECT COALESCE(SUM(size), 0) FROM media WHERE owner_id = ?1 AND created_at >= ?2",
            )?
            .query_row(params![owner, since], |row| row.get(0))
        })
        .await
    }

    async fn media_attach(&self, id: &str, conversation: ConversationId, seq: i64) -> Result<()> {
        let id = id.to_string();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(map_sqlite)?;
            tx.execute(
                "INSERT OR IGNORE INTO media_refs (media_id, conversation_id) VALUES (?1, ?2)",
                params![id, conversation],
            )
            .map_err(map_sqlite)?;
            tx.execute(
                "INSERT OR IGNORE INTO media_uses (conversation_id, seq, media_id) VALUES (?1, ?2, ?3)",
                params![conversation, seq, id],
            )
            .map_err(map_sqlite)?;
            tx.commit().map_err(map_sqlite)
        })
        .await
    }

    async fn media_release(&self, conversation: ConversationId, seq: i64) -> Result<Option<Media>> {
        // `?N` rather than the shared text's `$N`: SQLite binds `$N` by first appearance, not by number.
        let numbered = |sql: &str| sql.replace('$', "?");
        self.write(move |conn| {
            let tx = conn.transaction().map_err(map_sqlite)?;
            let Some(id) = tx
                .query_row(
                    &numbered(MEDIA_USE_DELETE_SQL),
                    params![conversation, seq],
                    |row| row.get::<_, String>(0),
                )
                .optional()
                .map_err(map_sqlite)?
            else {
                return Ok(None);
            };
            tx.execute(&numbered(MEDIA_REF_DROP_SQL), params![id, conversation])
                .map_err(map_sqlite)?;
            let now = now_millis();
            let deleted = tx
                .execute(&numbered(MEDIA_MARK_DELETED_SQL), params![id, now])
                .map_err(map_sqlite)?;
            let media = if deleted > 0 {
                tx.query_row(
                    &format!("SELECT {MEDIA_COLUMNS} FROM media WHERE id = ?1"),
                    [&id],
                    read_media,
                )
                .optional()
                .map_err(map_sqlite)?
            } else {
                None
            };
            tx.commit().map_err(map_sqlite)?;
            Ok(media)
        })
        .await
    }

    async fn media_visible(&self, id: &str, user: UserId) -> Result<bool> {
        let id = id.to_string();
        self.read_quick(move |conn| {
            // SQLite takes `$1` as a named parameter bound by position: the same text serves both backends.
            conn.prepare_cached(MEDIA_VISIBLE_SQL)?
                .query_row(params![id, user], |row| row.get(0))
        })
        .await
    }
}

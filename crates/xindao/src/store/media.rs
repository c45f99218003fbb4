//! The media metadata seam: what the upload, `send` and download paths need of the store. A trait of its own
//! (a supertrait of [`super::Store`]) so that the media code stays in its own files in both backends.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{ConversationId, Media, Millis, UserId};

#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Records an uploaded medium (its bytes are already in media storage).
    async fn media_insert(&self, media: &Media) -> Result<()>;
    /// A medium by id.
    async fn media(&self, id: &str) -> Result<Option<Media>>;
    /// Bytes `owner` uploaded since `since` (the daily quota).
    async fn media_uploaded_since(&self, owner: UserId, since: Millis) -> Result<i64>;
    /// Records that the medium was sent to `conversation` (idempotent): its members may download it.
    async fn media_attach(&self, id: &str, conversation: ConversationId) -> Result<()>;
    /// Whether `user` may download the medium: its owner, or a member of a conversation it was sent to.
    async fn media_visible(&self, id: &str, user: UserId) -> Result<bool>;
}

/// The columns every backend selects, in [`media_columns`] order.
pub(crate) const MEDIA_COLUMNS: &str =
    "id, owner_id, kind, mime, size, width, height, duration_ms, name, \
     storage_key, thumb_key, thumb_mime, thumb_size, created_at, public";

/// The visibility query of both backends (`?1`/`$1` the media id, `?2`/`$2` the user).
pub(crate) const MEDIA_VISIBLE_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM media WHERE id = $1 AND owner_id = $2)
     OR EXISTS (SELECT 1 FROM media_refs r JOIN members m ON m.conversation_id = r.conversation_id
                WHERE r.media_id = $1 AND m.user_id = $2)";

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
    /// Records that the medium was sent to `conversation` in message `seq` (idempotent): its members may
    /// download it, for as long as a message of theirs carries it.
    async fn media_attach(&self, id: &str, conversation: ConversationId, seq: i64) -> Result<()>;
    /// Message `seq` of `conversation` became a tombstone (recalled or removed): it no longer carries its
    /// medium. When no other message of the conversation carries it, the conversation's members lose access;
    /// when no message anywhere carries it (and it is not public), the medium is marked deleted (no longer
    /// served, still counted by the quota) and returned, for its bytes to be deleted. One transaction.
    async fn media_release(&self, conversation: ConversationId, seq: i64) -> Result<Option<Media>>;
    /// Whether `user` may download the medium: its owner, or a member of a conversation it was sent to.
    async fn media_visible(&self, id: &str, user: UserId) -> Result<bool>;
}

/// The columns every backend selects, in [`media_columns`] order.
pub(crate) const MEDIA_COLUMNS: &str =
    "id, owner_id, kind, mime, size, width, height, duration_ms, name, \
     storage_key, thumb_key, thumb_mime, thumb_size, created_at, public";

/// The visibility query of both backends (`?1`/`$1` the media id, `?2`/`$2` the user).
pub(crate) const MEDIA_VISIBLE_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM media WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL)
     OR EXISTS (SELECT 1 FROM media_refs r JOIN members m ON m.conversation_id = r.conversation_id
                WHERE r.media_id = $1 AND m.user_id = $2)";

/// The steps of [`MediaStore::media_release`], shared by both backends: take the message's use away and learn
/// its medium (`$1` conversation, `$2` seq)...
pub(crate) const MEDIA_USE_DELETE_SQL: &str =
    "DELETE FROM media_uses WHERE conversation_id = $1 AND seq = $2 RETURNING media_id";
/// ...drop the conversation's access when no other message of it carries the medium (`$1` media id, `$2`
/// conversation)...
pub(crate) const MEDIA_REF_DROP_SQL: &str =
    "DELETE FROM media_refs WHERE media_id = $1 AND conversation_id = $2
     AND NOT EXISTS (SELECT 1 FROM media_uses WHERE media_id = $1 AND conversation_id = $2)";
/// ...and mark the medium deleted when no message anywhere carries it (`$1` media id, `$2` now); public
/// media (avatars) stay.
pub(crate) const MEDIA_MARK_DELETED_SQL: &str =
    "UPDATE media SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL AND public = FALSE
     AND NOT EXISTS (SELECT 1 FROM media_uses WHERE media_id = $1)";

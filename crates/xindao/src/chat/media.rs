//! Media in messages: a `send` of kind image, voice or file names a medium its sender uploaded, and the
//! stored content is what the server knows of it (docs/protocol.md, "Media"); `media_url` hands out signed
//! download URLs to those who may see a medium: its owner, and the members of a conversation it was sent to.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::media::Storage;
use crate::model::{now_millis, ConversationId, MediaKind, MessageKind, UserId};
use crate::protocol::op::{MediaUrlArgs, MEDIA_URL_BATCH_MAX};

use super::{raw, Caller, Chat};

/// What a client sends as the content of a media message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MediaRef {
    media_id: String,
}

/// The media kind a message kind carries (`None`: not a media message).
pub(super) fn media_kind(kind: MessageKind) -> Option<MediaKind> {
    match kind {
        MessageKind::Image => Some(MediaKind::Image),
        MessageKind::Voice => Some(MediaKind::Voice),
        MessageKind::File => Some(MediaKind::File),
        MessageKind::Text | MessageKind::Custom => None,
    }
}

impl Chat {
    /// The stored content of a media message: `content` must be `{"media_id"}` naming a medium `sender`
    /// uploaded, of the message's kind. Returns the content filled in from the medium's record.
    pub(super) async fn media_content(
        &self,
        sender: UserId,
        kind: MediaKind,
        content: &Value,
    ) -> Result<Value> {
        let named: MediaRef = serde_json::from_value(content.clone()).map_err(|_| {
            Error::InvalidMessage(
                "the content of an image, voice or file message is {\"media_id\": \"...\"}".into(),
            )
        })?;
        let id = crate::media::parse_id(&named.media_id)
            .map_err(|_| Error::InvalidMessage("media_id is not a media id".into()))?;
        // Someone else's medium answers as an absent one: ids are not a way to probe others' uploads.
        let media = self
            .store
            .media(id)
            .await?
            .filter(|media| media.owner_id == sender)
            .ok_or_else(|| Error::InvalidMessage(format!("no media {id} uploaded by you")))?;
        if media.kind != kind {
            return Err(Error::InvalidMessage(format!(
                "media {id} was uploaded as {}, not as {}",
                media.kind.as_str(),
                kind.as_str()
            )));
        }
        let mut filled = json!({ "media_id": media.id, "mime": media.mime, "size": media.size });
        match kind {
            MediaKind::Image => {
                filled["width"] = media.width.into();
                filled["height"] = media.height.into();
                filled["thumb"] = media.thumb_key.is_some().into();
            }
            MediaKind::Voice => filled["duration_ms"] = media.duration_ms.into(),
            MediaKind::File => {
                if let Some(name) = media.name {
                    filled["name"] = name.into();
                }
            }
        }
        Ok(filled)
    }

    /// The media storage whose bytes are deleted when no message carries a medium any more.
    pub fn with_media_storage(mut self, storage: Arc<dyn Storage>) -> Chat {
        self.media_storage = Some(storage);
        self
    }

    /// After a media message is committed: its conversation's members may now download the medium.
    pub(super) async fn media_sent(
        &self,
        content: &Value,
        conversation: ConversationId,
        seq: i64,
    ) -> Result<()> {
        match content.get("media_id").and_then(Value::as_str) {
            Some(id) => self.store.media_attach(id, conversation, seq).await,
            None => Ok(()),
        }
    }

    /// After message `seq` of a media kind became a recalled or removed tombstone: the conversation loses
    /// access to its medium unless another of its messages carries it, and a medium no message carries any
    /// more is deleted: no longer served (URLs already handed out answer `404`), its bytes and thumbnail
    /// removed from storage. A medium another message still carries (sent again elsewhere) stays.
    pub(super) async fn media_released(
        &self,
        conversation: ConversationId,
        seq: i64,
    ) -> Result<()> {
        let Some(media) = self.store.media_release(conversation, seq).await? else {
            return Ok(());
        };
        let Some(storage) = &self.media_storage else {
            return Ok(());
        };
        // The record is already marked deleted (nothing serves it): a storage failure leaves unreachable
        // bytes behind, logged, rather than failing the recall.
        for key in std::iter::once(&media.storage_key).chain(media.thumb_key.as_ref()) {
            if let Err(e) = storage.delete(key).await {
                tracing::warn!(media_id = %media.id, key, error = %e, "deleting a released medium failed");
            }
        }
        Ok(())
    }

    /// `media_url`: signed URLs of a medium (and its thumbnail) for its owner or a member of a conversation
    /// it was sent to; `forbidden` for anyone else and for an id that does not exist. With `media_ids`, the
    /// URLs of each one the caller may see, keyed by id (the others are left out).
    pub(super) async fn media_url(&self, caller: Caller, a: MediaUrlArgs) -> Result<Box<RawValue>> {
        let signer = self
            .media_signer
            .as_ref()
            .ok_or_else(|| Error::Unavailable("media URLs are not configured".into()))?;
        let now = (now_millis() / 1000) as u64;
        match (a.media_id, a.media_ids) {
            (Some(id), None) => {
                let urls = self.urls(caller.user_id, &id, signer, now).await?.ok_or(
                    Error::Forbidden(
                        "you may not see this media (not yours, and not sent to a conversation of yours)",
                    ),
                )?;
                let mut reply = urls;
                reply["expires_at"] = (signer.expires_at(now) * 1000).into();
                raw(&reply)
            }
            (None, Some(ids)) => {
                if ids.len() > MEDIA_URL_BATCH_MAX {
                    return Err(Error::InvalidArgs(format!(
                        "at most {MEDIA_URL_BATCH_MAX} media_ids"
                    )));
                }
                let mut urls = serde_json::Map::new();
                for id in ids {
                    if let Some(found) = self.urls(caller.user_id, &id, signer, now).await? {
                        urls.insert(id, found);
                    }
                }
                let expires_at = signer.expires_at(now) * 1000;
                raw(&json!({ "urls": urls, "expires_at": expires_at }))
            }
            _ => Err(Error::InvalidArgs(
                "give exactly one of media_id and media_ids".into(),
            )),
        }
    }

    /// `{"url", "thumb_url"?}` of medium `id` if `user` may see it.
    async fn urls(
        &self,
        user: UserId,
        id: &str,
        signer: &crate::media::Signer,
        now: u64,
    ) -> Result<Option<Value>> {
        let id = crate::media::parse_id(id)?;
        if !self.store.media_visible(id, user).await? {
            return Ok(None);
        }
        let Some(media) = self.store.media(id).await? else {
            return Ok(None);
        };
        let mut urls = json!({ "url": signer.sign(id, false, now).url });
        if media.thumb_key.is_some() {
            urls["thumb_url"] = signer.sign(id, true, now).url.into();
        }
        Ok(Some(urls))
    }
}

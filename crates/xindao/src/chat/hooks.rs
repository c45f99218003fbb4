//! Where the chat service meets webhooks: the before-send hook on `send`, and the events of changes that are
//! not new messages (a message deleted, member, room, read mark, first and last connection), written to the
//! outbox right after the change commits. (`message.created` is written by the store inside the batch's own transaction.)

use std::sync::Arc;

use crate::error::Result;
use crate::model::{ConversationId, MessageKind, UserId, Visibility};
use crate::store::{Outbox, OutboxEvent};
use crate::webhooks::{self, before_send::BeforeSend};

use super::Chat;

/// The webhook side of the chat service: none by default.
#[derive(Default)]
pub struct Hooks {
    pub outbox: Arc<Outbox>,
    pub before_send: Option<BeforeSend>,
    /// WeChat's content check and offline notification, when configured.
    pub wechat: Option<crate::wechat::WeChat>,
}

impl Chat {
    /// Sends events to the webhook outbox and asks `before_send` about user messages.
    pub fn with_hooks(mut self, hooks: Hooks) -> Chat {
        self.hooks = Arc::new(hooks);
        self
    }

    /// The content to commit: the client's, or the before-send hook's replacement (checked like a client's,
    /// a media message's as the same kind of medium); `rejected` when the hook refuses the message.
    pub(super) async fn before_send(
        &self,
        conversation_id: ConversationId,
        sender_id: UserId,
        cmid: &str,
        kind: MessageKind,
        content: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let Some(hook) = &self.hooks.before_send else {
            return Ok(content);
        };
        match hook
            .check(conversation_id, sender_id, cmid, kind, &content)
            .await?
        {
            None => Ok(content),
            // A media message's replacement is checked like a client's `{"media_id"}` (a medium the sender
            // uploaded, of the message's kind) and filled in from that medium's record: only its `media_id`
            // counts, not the figures the hook may have copied along.
            Some(replaced) => match super::media::media_kind(kind) {
                Some(media) => {
                    let named = match replaced.get("media_id") {
                        Some(id) => serde_json::json!({ "media_id": id }),
                        None => replaced,
                    };
                    self.media_content(sender_id, media, &named).await
                }
                None => {
                    crate::validate::content(
                        kind,
                        &replaced,
                        self.config.max_text_chars,
                        self.config.max_custom_bytes,
                    )?;
                    Ok(replaced)
                }
            },
        }
    }

    /// Writes one event to the outbox if an endpoint wants it (nothing is built otherwise).
    pub(super) async fn emit(&self, event: &'static str, make: impl FnOnce() -> OutboxEvent) {
        if !self.hooks.outbox.wants(event) {
            return;
        }
        if let Err(error) = self.store.webhook_enqueue(vec![make()]).await {
            tracing::error!(%error, event, "webhook event not kept");
        }
    }

    pub(super) async fn emit_member(
        &self,
        conversation_id: ConversationId,
        user_id: UserId,
        action: &str,
        by: UserId,
    ) {
        let event = webhooks::member_event(action);
        self.emit(event, || {
            let data = webhooks::MemberData {
                conversation_id,
                user_id,
                by,
            };
            OutboxEvent::conversation(event, conversation_id, &data)
        })
        .await;
    }

    /// `message.deleted` for a message `change` made a tombstone.
    pub(super) async fn emit_message_deleted(
        &self,
        tombstone: &crate::model::Message,
        change: &crate::store::StateChange,
    ) {
        self.emit(webhooks::MESSAGE_DELETED, || {
            let data = webhooks::DeletedData {
                conversation_id: tombstone.conversation_id,
                seq: tombstone.seq,
                id: tombstone.id,
                sender_id: tombstone.sender_id,
                reason: webhooks::DeletedData::reason(change),
                by: change.by(),
            };
            OutboxEvent::conversation(webhooks::MESSAGE_DELETED, tombstone.conversation_id, &data)
        })
        .await;
    }

    pub(super) async fn emit_room_created(
        &self,
        conversation_id: ConversationId,
        owner_id: UserId,
        name: &str,
        visibility: Visibility,
    ) {
        self.emit(webhooks::ROOM_CREATED, || {
            let data = webhooks::RoomData {
                conversation_id,
                owner_id,
                name,
                visibility,
            };
            OutboxEvent::conversation(webhooks::ROOM_CREATED, conversation_id, &data)
        })
        .await;
    }

    pub(super) async fn emit_read(
        &self,
        conversation_id: ConversationId,
        user_id: UserId,
        seq: i64,
    ) {
        self.emit(webhooks::READ_MOVED, || {
            let data = webhooks::ReadData {
                conversation_id,
                user_id,
                seq,
            };
            OutboxEvent::conversation(webhooks::READ_MOVED, conversation_id, &data)
        })
        .await;
    }

    /// `user.connected` (first connection on this node) or `user.disconnected` (last), in the background:
    /// a disconnect has no caller to wait.
    pub(super) fn emit_presence(&self, user_id: UserId, connected: bool) {
        let event = if connected {
            webhooks::USER_CONNECTED
        } else {
            webhooks::USER_DISCONNECTED
        };
        if !self.hooks.outbox.wants(event) {
            return;
        }
        let store = self.store.clone();
        let data = OutboxEvent::user(event, user_id, &webhooks::UserData { user_id });
        tokio::spawn(async move {
            if let Err(error) = store.webhook_enqueue(vec![data]).await {
                tracing::error!(%error, event, "webhook event not kept");
            }
        });
    }
}

//! Recall, remove and delete-for-me: `recall` (the sender, within `recall_window_secs`), `message_remove` (a
//! room's owner) and `hide` (one user, across their devices). The store makes the message a tombstone (its
//! content erased, its seq kept) under the rules in `rules/messages.rs`; this tells who needs to know with a
//! `message_state` push: every member's connections for a recall or a removal, the user's own connections
//! for a hide.

use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::error::Result;
use crate::hub::Delivery;
use crate::model::{now_millis, ConversationId, MessageState, UserId};
use crate::protocol::{self, op::MessageRefArgs};
use crate::store::StateChange;

use super::{raw, Caller, Chat};

/// The `message_state` push.
#[derive(Serialize)]
struct MessageStateEvent {
    conversation_id: ConversationId,
    seq: i64,
    state: MessageState,
    /// Absent when the server API made the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<UserId>,
}

impl Chat {
    pub(super) async fn recall(&self, caller: Caller, a: MessageRefArgs) -> Result<Box<RawValue>> {
        let window_ms = i64::try_from(self.config.recall_window_secs)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        let change = StateChange::Recall {
            by: caller.user_id,
            now: now_millis(),
            window_ms,
        };
        self.change_message(a.conversation_id, a.seq.0, change)
            .await?;
        raw(&json!({}))
    }

    pub(super) async fn message_remove(
        &self,
        caller: Caller,
        a: MessageRefArgs,
    ) -> Result<Box<RawValue>> {
        let change = StateChange::Remove { by: caller.user_id };
        self.change_message(a.conversation_id, a.seq.0, change)
            .await?;
        raw(&json!({}))
    }

    pub(super) async fn hide(&self, caller: Caller, a: MessageRefArgs) -> Result<Box<RawValue>> {
        let user_id = caller.user_id;
        if self
            .store
            .hide_message(user_id, a.conversation_id, a.seq.0)
            .await?
        {
            let frame = state_frame(
                a.conversation_id,
                a.seq.0,
                MessageState::Hidden,
                Some(user_id),
            );
            self.bus.publish(Delivery::User { user_id, frame });
        }
        raw(&json!({}))
    }

    /// Makes a message a tombstone if the rules allow `change`, and tells every member's connections. Returns
    /// whether it changed (false: it already was a tombstone). For the server API
    /// ([`StateChange::RemoveByServer`]) as well as the operations.
    pub async fn change_message(
        &self,
        conversation_id: ConversationId,
        seq: i64,
        change: StateChange,
    ) -> Result<bool> {
        let Some(tombstone) = self
            .store
            .set_message_state(conversation_id, seq, change)
            .await?
        else {
            return Ok(false);
        };
        let state = tombstone.state.unwrap_or(MessageState::Removed);
        if super::media::media_kind(tombstone.kind).is_some() {
            self.media_released(conversation_id, seq).await?;
        }
        self.bus.publish(Delivery::Conversation {
            conversation_id,
            frame: state_frame(conversation_id, seq, state, change.by()),
            own: None,
            skip_conn: 0,
            skip_user: 0,
        });
        self.emit_message_deleted(&tombstone, &change).await;
        Ok(true)
    }
}

fn state_frame(
    conversation_id: ConversationId,
    seq: i64,
    state: MessageState,
    by: Option<UserId>,
) -> axum::extract::ws::Utf8Bytes {
    protocol::event(
        "message_state",
        &MessageStateEvent {
            conversation_id,
            seq,
            state,
            by,
        },
    )
}

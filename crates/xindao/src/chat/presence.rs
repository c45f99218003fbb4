//! Ephemeral state, never stored: `presence` (who is online, and a subscription to changes) and `typing`.
//!
//! Presence is told only about users who share a conversation with the watcher (checked when `presence` is
//! asked): anyone else reads as offline and is not watched, so that presence cannot be used to follow a
//! stranger's comings and goings.

use std::collections::HashSet;

use serde_json::json;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::hub::Delivery;
use crate::model::UserId;
use crate::protocol::{
    self,
    op::{ConversationArgs, PresenceArgs},
};

use super::{raw, Caller, Chat};

const PRESENCE_WATCH_MAX: usize = 500;

impl Chat {
    /// Answers who of `user_ids` is online and subscribes this connection to exactly those of them who share a
    /// conversation with the caller; the others read as offline.
    pub(super) async fn presence(&self, caller: Caller, a: PresenceArgs) -> Result<Box<RawValue>> {
        let mut seen = HashSet::new();
        let watched: Vec<UserId> = a
            .user_ids
            .into_iter()
            .filter(|id| seen.insert(*id))
            .collect();
        if watched.len() > PRESENCE_WATCH_MAX {
            return Err(Error::InvalidArgs(format!(
                "at most {PRESENCE_WATCH_MAX} user_ids"
            )));
        }
        let visible: HashSet<UserId> = self
            .store
            .sharing_with(caller.user_id, &watched)
            .await?
            .into_iter()
            .collect();
        let allowed: Vec<UserId> = watched
            .iter()
            .copied()
            .filter(|id| visible.contains(id))
            .collect();
        self.hub
            .watch_presence(caller.user_id, caller.conn_id, &allowed);
        let presence: Vec<_> = watched
            .iter()
            .map(|&id| {
                let online = visible.contains(&id) && self.bus.is_online(id);
                json!({ "user_id": id, "online": online })
            })
            .collect();
        raw(&json!({ "presence": presence }))
    }

    /// Tells the other members' connections that the caller is typing.
    pub(super) async fn typing(
        &self,
        caller: Caller,
        a: ConversationArgs,
    ) -> Result<Box<RawValue>> {
        self.require_member(a.conversation_id, caller.user_id)
            .await?;
        let frame = protocol::event(
            "typing",
            &json!({ "conversation_id": a.conversation_id, "user_id": caller.user_id }),
        );
        self.bus.publish(Delivery::Conversation {
            conversation_id: a.conversation_id,
            frame,
            own: None,
            skip_conn: caller.conn_id,
            skip_user: caller.user_id,
        });
        raw(&json!({}))
    }
}

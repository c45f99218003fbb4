//! Ephemeral state, never stored: `presence` (who is online, and a subscription to changes) and `typing`.

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
    /// Answers who of `user_ids` is online and subscribes this connection to exactly these users.
    pub(super) fn presence(&self, caller: Caller, a: PresenceArgs) -> Result<Box<RawValue>> {
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
        self.hub
            .watch_presence(caller.user_id, caller.conn_id, &watched);
        let presence: Vec<_> = watched
            .iter()
            .map(|&id| json!({ "user_id": id, "online": self.bus.is_online(id) }))
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

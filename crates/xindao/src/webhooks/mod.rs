//! Webhooks: what a business backend learns of chat, and the hook it may put in front of sends.
//!
//! Events are written to an outbox in the transaction that commits them (`store::outbox`, per backend), and
//! delivered from there by [`worker`]: signed POSTs of batches of events ([`batch`]), retried with backoff
//! and jitter for `webhook_retry_secs`, then parked in a dead-letter list. One conversation's events reach an
//! endpoint in one POST at a time, in commit order; nodes of a cluster claim rows through the shared store, so each is sent by one node. The
//! before-send hook ([`before_send`]) is asked synchronously before a message enters the group commit.
//! [`offline`] announces messages committed for members with no open connection (`user.offline_message`,
//! coalesced); [`admin`] reads and redrives the dead-letter list (server API and command line).
//! Design and trade-offs: docs/decisions/webhook-outbox.md; payloads and signatures: docs/webhooks.md.

pub mod admin;
pub mod batch;
pub mod before_send;

pub mod offline;
pub mod worker;

pub use crate::metrics::WebhookMetrics;

use serde::Serialize;

use crate::model::{ConversationId, Millis, UserId};

pub use crate::store::outbox::MESSAGE_CREATED;
pub const MESSAGE_DELETED: &str = "message.deleted";
pub const USER_OFFLINE_MESSAGE: &str = "user.offline_message";
pub const ROOM_CREATED: &str = "room.created";
pub const READ_MOVED: &str = "read.moved";
pub const USER_CONNECTED: &str = "user.connected";
pub const USER_DISCONNECTED: &str = "user.disconnected";
/// A message WeChat's content check said to review, sent under `content_review = "flag"`.
pub const MESSAGE_FLAGGED: &str = "message.flagged";

/// The `member.*` event of a membership change (`joined`, `left`, `added`, `removed`).
pub fn member_event(action: &str) -> &'static str {
    match action {
        "joined" => "member.joined",
        "left" => "member.left",
        "added" => "member.added",
        _ => "member.removed",
    }
}

/// `message.deleted`: a message became a tombstone for everyone (its content erased, its seq kept).
#[derive(Serialize)]
pub struct DeletedData {
    pub conversation_id: ConversationId,
    pub seq: i64,
    /// The message's id and sender.
    pub id: i64,
    pub sender_id: UserId,
    /// `recalled` (its sender, `recall`), `removed_by_owner` (the room's owner, `message_remove`) or
    /// `removed_by_server` (the server API's `DELETE`).
    pub reason: &'static str,
    /// The user who made the change; absent for `removed_by_server`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<UserId>,
}

impl DeletedData {
    /// The reason of a change.
    pub fn reason(change: &crate::store::StateChange) -> &'static str {
        use crate::store::StateChange;
        match change {
            StateChange::Recall { .. } => "recalled",
            StateChange::Remove { .. } => "removed_by_owner",
            StateChange::RemoveByServer => "removed_by_server",
        }
    }
}

/// `member.*`: who, which room, by whom.
#[derive(Serialize)]
pub struct MemberData {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub by: UserId,
}

/// `room.created`.
#[derive(Serialize)]
pub struct RoomData<'a> {
    pub conversation_id: ConversationId,
    pub owner_id: UserId,
    pub name: &'a str,
    pub visibility: crate::model::Visibility,
}

/// `read.moved`.
#[derive(Serialize)]
pub struct ReadData {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub seq: i64,
}

/// `user.connected` / `user.disconnected`.
#[derive(Serialize)]
pub struct UserData {
    pub user_id: UserId,
}

/// One event of a POST's `events` (the body is `{"events": [...]}`, see [`batch`]).
#[derive(Serialize)]
pub struct Delivery<'a> {
    /// The delivery id: the same on every retry and after a redrive (a receiver drops repeats by it).
    pub id: String,
    pub event: &'a str,
    /// When the event committed (ms since the epoch).
    pub created_at: Millis,
    /// The id of the request (HTTP or WebSocket) whose commit made the event, as in xindao's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    pub data: &'a serde_json::value::RawValue,
}

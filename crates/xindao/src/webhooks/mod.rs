//! Webhooks: what a business backend learns of chat, and the hook it may put in front of sends.
//!
//! Events are written to an outbox in the transaction that commits them (`store::outbox`, per backend), and
//! delivered from there by [`worker`]: signed POSTs, retried with backoff and jitter for `webhook_retry_secs`,
//! then parked in a dead-letter list. One conversation's events go to an endpoint one at a time, in commit
//! order; nodes of a cluster claim rows through the shared store, so each is sent by one node. The
//! before-send hook ([`before_send`]) is asked synchronously before a message enters the group commit.
//! Design and trade-offs: docs/decisions/webhook-outbox.md; payloads and signatures: docs/webhooks.md.

pub mod admin;
pub mod before_send;
mod metrics;
pub mod worker;

pub use metrics::WebhookMetrics;

use serde::Serialize;

use crate::model::{ConversationId, Millis, UserId};

pub use crate::store::outbox::MESSAGE_CREATED;
pub const ROOM_CREATED: &str = "room.created";
pub const READ_MOVED: &str = "read.moved";
pub const USER_CONNECTED: &str = "user.connected";
pub const USER_DISCONNECTED: &str = "user.disconnected";

/// The `member.*` event of a membership change (`joined`, `left`, `added`, `removed`).
pub fn member_event(action: &str) -> &'static str {
    match action {
        "joined" => "member.joined",
        "left" => "member.left",
        "added" => "member.added",
        _ => "member.removed",
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

/// The body of one delivery.
#[derive(Serialize)]
pub struct Delivery<'a> {
    /// The delivery id (also `X-Xindao-Delivery`): the same on every retry and after a redrive.
    pub id: String,
    pub event: &'a str,
    /// When the event committed (ms since the epoch).
    pub created_at: Millis,
    pub data: &'a serde_json::value::RawValue,
}

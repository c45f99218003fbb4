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

use crate::model::{ConversationId, MessageKind, Millis, UserId};
use crate::store::group_commit::{AppendJob, Stored};
use crate::store::OutboxEvent;

pub const MESSAGE_CREATED: &str = "message.created";
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

/// `message.created`: the committed message as clients see it.
#[derive(Serialize)]
struct MessageData<'a> {
    id: i64,
    conversation_id: ConversationId,
    seq: i64,
    sender_id: UserId,
    cmid: &'a str,
    kind: MessageKind,
    content: &'a serde_json::Value,
    ts: Millis,
}

/// The `message.created` events of a committed batch (new messages only), in commit order.
pub(crate) fn message_events(
    batch: &[AppendJob],
    results: &[crate::Result<Stored>],
) -> Vec<OutboxEvent> {
    batch
        .iter()
        .zip(results)
        .filter_map(|(job, result)| match result {
            Ok(Stored::New { id, seq, ts }) => {
                let m = &job.message;
                Some(OutboxEvent::conversation(
                    MESSAGE_CREATED,
                    m.conversation_id,
                    &MessageData {
                        id: *id,
                        conversation_id: m.conversation_id,
                        seq: *seq,
                        sender_id: m.sender_id,
                        cmid: &m.cmid,
                        kind: m.kind,
                        content: &m.content,
                        ts: *ts,
                    },
                ))
            }
            _ => None,
        })
        .collect()
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

//! The shape of a `message` push (docs/protocol.md, "Push shapes"): a push carries only what its recipient
//! needs. Everyone but the sender gets the message without its `cmid` (it only lets the sender's devices match
//! the message to their own outbox); the sender's other connections get it with the `cmid`. Neither carries
//! `kind` when it is the default `text`. Replies, `history` and `sync` keep the full [`Message`].
//!
//! Fan-out encodes each variant once per message, never per recipient.

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;

use crate::model::{ConversationId, Message, MessageKind, Millis, UserId};

/// The two encodings of one message's push.
pub struct MessageFrames {
    /// For every member's connections but the sender's: no `cmid`.
    pub others: Utf8Bytes,
    /// For the sender's other connections: with the `cmid`.
    pub sender: Utf8Bytes,
}

#[derive(Serialize)]
struct MessagePush<'a> {
    id: i64,
    conversation_id: ConversationId,
    seq: i64,
    sender_id: UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    cmid: Option<&'a str>,
    #[serde(skip_serializing_if = "is_text")]
    kind: MessageKind,
    content: &'a serde_json::Value,
    ts: Millis,
}

fn is_text(kind: &MessageKind) -> bool {
    *kind == MessageKind::Text
}

impl<'a> MessagePush<'a> {
    fn new(message: &'a Message, with_cmid: bool) -> MessagePush<'a> {
        MessagePush {
            id: message.id,
            conversation_id: message.conversation_id,
            seq: message.seq,
            sender_id: message.sender_id,
            cmid: with_cmid.then_some(message.cmid.as_str()),
            kind: message.kind,
            content: &message.content,
            ts: message.ts,
        }
    }
}

/// Encodes both variants of a message's push, once each.
pub fn message_frames(message: &Message) -> MessageFrames {
    MessageFrames {
        others: super::event("message", &MessagePush::new(message, false)),
        sender: super::event("message", &MessagePush::new(message, true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A 64-byte text with realistic ids and an SDK-made cmid (`c-` + base-36 ms + `-` + 24 hex digits).
    fn message(kind: MessageKind, content: Value) -> Message {
        Message {
            id: 1_234_567,
            conversation_id: 4_242,
            seq: 98_765,
            sender_id: 100_001,
            cmid: "c-mim3k2xq-9f86d081884c7d659a2feaa0".into(),
            kind,
            content,
            ts: 1_764_750_000_000,
            state: None,
        }
    }

    fn parse(frame: &Utf8Bytes) -> Value {
        serde_json::from_str(frame.as_str()).unwrap()
    }

    #[test]
    fn others_get_no_cmid_and_no_default_kind() {
        let text = "x".repeat(64);
        let m = message(MessageKind::Text, json!(text));
        let frames = message_frames(&m);
        let mut full = serde_json::to_value(&m).unwrap();
        let object = full.as_object_mut().unwrap();
        object.remove("kind");
        assert_eq!(
            parse(&frames.sender),
            json!({ "event": "message", "data": full })
        );
        full.as_object_mut().unwrap().remove("cmid");
        assert_eq!(
            parse(&frames.others),
            json!({ "event": "message", "data": full })
        );
        assert!(!frames.others.as_str().contains("null"));
    }

    #[test]
    fn a_custom_kind_is_always_said() {
        let m = message(MessageKind::Custom, json!({ "card": 1 }));
        let frames = message_frames(&m);
        assert_eq!(parse(&frames.others)["data"]["kind"], "custom");
        assert_eq!(parse(&frames.sender)["data"]["kind"], "custom");
    }

    /// The figure in docs/decisions/lean-push-frames.md: `cargo test -p xindao --lib bytes_per_push -- --nocapture`.
    #[test]
    fn bytes_per_push_for_a_64_byte_text() {
        let m = message(MessageKind::Text, json!("x".repeat(64)));
        let before = super::super::event("message", &m).len();
        let frames = message_frames(&m);
        let (others, sender) = (frames.others.len(), frames.sender.len());
        println!("message push, 64 B text: before {before} B; now {others} B to other members, {sender} B to the sender's other devices");
        assert_eq!(
            before - others,
            59,
            "cmid (45 B with a 35-character cmid) and kind (14 B) are gone"
        );
        assert_eq!(before - sender, 14, "kind is gone");
    }
}

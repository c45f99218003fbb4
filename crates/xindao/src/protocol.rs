//! Wire protocol v1 (docs/protocol.md): request envelopes, typed arguments, reply and event encoding.

use std::collections::HashMap;

use axum::extract::ws::Utf8Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::model::{ConversationId, MessageKind, UserId, Visibility};

pub const PROTOCOL_VERSION: u32 = 1;

/// A request id: a string of at most 64 characters, or an integer, echoed in the reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RequestId {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default, borrow)]
    op: Option<&'a RawValue>,
    #[serde(default, borrow)]
    args: Option<&'a RawValue>,
}

/// A decoded request whose arguments are still raw (they are parsed per operation).
pub struct Request<'a> {
    pub id: RequestId,
    pub op: String,
    pub args: Option<&'a RawValue>,
}

/// Decodes a frame. An error carries the request id when one could be read, so the reply can echo it.
pub fn decode(frame: &str) -> std::result::Result<Request<'_>, (Option<RequestId>, Error)> {
    let envelope: RawEnvelope = serde_json::from_str(frame).map_err(|e| {
        (
            None,
            Error::BadRequest(format!("frame is not a JSON object: {e}")),
        )
    })?;
    let id = match envelope.id {
        Some(serde_json::Value::Number(n)) if n.is_i64() => {
            RequestId::Number(n.as_i64().unwrap_or_default())
        }
        Some(serde_json::Value::String(s)) if !s.is_empty() && s.chars().count() <= 64 => {
            RequestId::Text(s)
        }
        _ => {
            return Err((
                None,
                Error::BadRequest(
                    "`id` must be an integer or a string of 1..=64 characters".into(),
                ),
            ))
        }
    };
    let op = match envelope
        .op
        .map(|raw| serde_json::from_str::<String>(raw.get()))
    {
        Some(Ok(op)) => op,
        _ => return Err((Some(id), Error::BadRequest("`op` must be a string".into()))),
    };
    Ok(Request {
        id,
        op,
        args: envelope.args,
    })
}

/// Parses the `args` of an operation; absent args read as `{}`.
pub fn args<T: DeserializeOwned>(raw: Option<&RawValue>) -> Result<T> {
    let text = raw.map_or("{}", RawValue::get);
    serde_json::from_str(text).map_err(|e| Error::InvalidArgs(format!("invalid args: {e}")))
}

#[derive(Serialize)]
struct OkReply<'a, T: Serialize> {
    id: &'a RequestId,
    ok: bool,
    result: T,
}

#[derive(Serialize)]
struct ErrReply<'a> {
    id: Option<&'a RequestId>,
    ok: bool,
    error: serde_json::Value,
}

#[derive(Serialize)]
struct EventFrame<'a, T: Serialize> {
    event: &'a str,
    data: T,
}

fn to_frame(value: &impl Serialize) -> Utf8Bytes {
    // Serialising our own types cannot fail; fall back to an error frame rather than panic.
    serde_json::to_string(value)
        .unwrap_or_else(|_| r#"{"event":"error","data":{"code":"internal"}}"#.to_string())
        .into()
}

pub fn ok_reply(id: &RequestId, result: &impl Serialize) -> Utf8Bytes {
    to_frame(&OkReply {
        id,
        ok: true,
        result,
    })
}

pub fn error_reply(id: Option<&RequestId>, error: &Error) -> Utf8Bytes {
    to_frame(&ErrReply {
        id,
        ok: false,
        error: error.to_json(),
    })
}

/// Encodes a server push once; the result is shared by every recipient.
pub fn event(name: &str, data: &impl Serialize) -> Utf8Bytes {
    to_frame(&EventFrame { event: name, data })
}

// ---- Operation arguments ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationArgs {
    pub conversation_id: ConversationId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFindArgs {
    pub display_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectOpenArgs {
    pub user_id: UserId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomCreateArgs {
    pub name: String,
    #[serde(default)]
    pub visibility: Visibility,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomMemberArgs {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitArgs {
    pub limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendArgs {
    pub conversation_id: Option<ConversationId>,
    pub to_user: Option<UserId>,
    pub cmid: String,
    #[serde(default)]
    pub kind: MessageKind,
    #[serde(default)]
    pub content: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryArgs {
    pub conversation_id: ConversationId,
    pub before_seq: Option<i64>,
    pub after_seq: Option<i64>,
    pub limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncArgs {
    #[serde(default)]
    pub cursors: HashMap<String, i64>,
    pub limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    pub conversation_id: ConversationId,
    pub seq: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceArgs {
    pub user_ids: Vec<UserId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_reports_what_is_wrong() {
        assert!(matches!(decode("nope"), Err((None, Error::BadRequest(_)))));
        assert!(matches!(
            decode(r#"{"op":"ping"}"#),
            Err((None, Error::BadRequest(_)))
        ));
        assert!(matches!(
            decode(r#"{"id":1}"#),
            Err((Some(RequestId::Number(1)), Error::BadRequest(_)))
        ));
        let request = decode(r#"{"id":"a","op":"ping"}"#).unwrap();
        assert_eq!(request.op, "ping");
        assert_eq!(request.id, RequestId::Text("a".into()));
    }

    #[test]
    fn replies_echo_ids() {
        let frame = ok_reply(&RequestId::Number(7), &serde_json::json!({"x": 1}));
        assert_eq!(frame.as_str(), r#"{"id":7,"ok":true,"result":{"x":1}}"#);
        let frame = error_reply(None, &Error::Unauthorized);
        assert!(frame
            .as_str()
            .starts_with(r#"{"id":null,"ok":false,"error":{"code":"unauthorized""#));
    }
}

//! Wire protocol v1 (docs/protocol.md): the request envelope, reply and event encoding. The operations and
//! their typed arguments are in [`op`].
//!
//! A frame is decoded without building a JSON tree: the envelope's `id`, `op` and `args` are borrowed from the
//! frame as raw JSON, and only the arguments of the one operation named are parsed, straight into their type.

pub mod op;
#[cfg(test)]
mod props;
pub mod push;

use std::fmt;

use axum::extract::ws::Utf8Bytes;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::Error;
pub use op::Op;

pub const PROTOCOL_VERSION: u32 = 1;

/// A request id: a string of at most 64 characters, or an integer, echoed in the reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RequestId {
    Number(i64),
    Text(String),
}

/// As a log field: the number, or the string as the client sent it, JSON-quoted (so it cannot forge other fields).
impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::Text(text) => write!(f, "{text:?}"),
        }
    }
}

/// A decoded request: the id to echo and the operation with its arguments.
#[derive(Debug)]
pub struct Request {
    pub id: RequestId,
    pub op: Op,
    /// `"timing": true`: the reply carries the server's split of its time ([`crate::obs::timing`]).
    pub timing: bool,
}

/// Decodes a frame. An error carries the request id when one could be read, so the reply can echo it:
/// `bad_request` for anything but a JSON object with a usable `id` and a string `op`, then `unknown_op` or
/// `invalid_args` from [`Op::decode`].
pub fn decode(frame: &str) -> Result<Request, (Option<RequestId>, Error)> {
    let envelope: Envelope = serde_json::from_str(frame).map_err(|e| {
        (
            None,
            Error::BadRequest(format!("frame is not a JSON object: {e}")),
        )
    })?;
    let Some(id) = envelope.id.and_then(request_id) else {
        return Err((
            None,
            Error::BadRequest("`id` must be an integer or a string of 1..=64 characters".into()),
        ));
    };
    let Some(op) = envelope.op.filter(|op| op.get().starts_with('"')) else {
        return Err((Some(id), Error::BadRequest("`op` must be a string".into())));
    };
    match Op::decode(op, envelope.args) {
        Ok(op) => Ok(Request {
            id,
            op,
            timing: envelope.timing.is_some_and(|t| t.get() == "true"),
        }),
        Err(error) => Err((Some(id), error)),
    }
}

/// Reads a request id, or `None` when it is not an integer or a string of 1..=64 characters.
fn request_id(raw: &RawValue) -> Option<RequestId> {
    match serde_json::from_str(raw.get()).ok()? {
        RequestId::Text(text) if text.is_empty() || text.chars().count() > 64 => None,
        id => Some(id),
    }
}

/// The fields of a request envelope, each still raw JSON borrowed from the frame. Unknown fields are ignored.
struct Envelope<'a> {
    id: Option<&'a RawValue>,
    op: Option<&'a RawValue>,
    args: Option<&'a RawValue>,
    timing: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum EnvelopeField {
    Id,
    Op,
    Args,
    Timing,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_map`, not a derived struct: serde_json reads a struct from an array too, and the
        // protocol says a request is a JSON object.
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut envelope = Envelope {
            id: None,
            op: None,
            args: None,
            timing: None,
        };
        while let Some(field) = map.next_key()? {
            let (slot, name) = match field {
                EnvelopeField::Id => (&mut envelope.id, "id"),
                EnvelopeField::Op => (&mut envelope.op, "op"),
                EnvelopeField::Args => (&mut envelope.args, "args"),
                EnvelopeField::Timing => (&mut envelope.timing, "timing"),
                EnvelopeField::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(de::Error::duplicate_field(name));
            }
            *slot = Some(map.next_value()?);
        }
        Ok(envelope)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn code(frame: &str) -> (Option<RequestId>, &'static str) {
        match decode(frame) {
            Ok(_) => (None, "ok"),
            Err((id, error)) => (id, error.code()),
        }
    }

    #[test]
    fn decode_reports_what_is_wrong() {
        assert_eq!(code("nope"), (None, "bad_request"));
        assert_eq!(code(r#"{"op":"ping"}"#), (None, "bad_request"));
        assert_eq!(code(r#"{"id":1.5,"op":"ping"}"#), (None, "bad_request"));
        assert_eq!(code(r#"{"id":"","op":"ping"}"#), (None, "bad_request"));
        assert_eq!(
            code(r#"{"id":1}"#),
            (Some(RequestId::Number(1)), "bad_request")
        );
        assert_eq!(
            code(r#"{"id":1,"op":7}"#),
            (Some(RequestId::Number(1)), "bad_request")
        );
        assert_eq!(
            code(r#"{"id":1,"id":2,"op":"ping"}"#),
            (None, "bad_request")
        );
        let request = decode(r#" {"args":{},"op":"ping","extra":[1],"id":"a"} "#).unwrap();
        assert!(matches!(request.op, Op::Ping(_)));
        assert_eq!(request.id, RequestId::Text("a".into()));
    }

    #[test]
    fn only_an_object_is_a_request() {
        for frame in [
            r#"[5,"ping"]"#,
            r#"[5,"ping",{}]"#,
            "5",
            r#""ping""#,
            "null",
        ] {
            assert_eq!(code(frame), (None, "bad_request"), "{frame}");
        }
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

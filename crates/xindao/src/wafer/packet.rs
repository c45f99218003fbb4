//! Wafer's tunnel wire format: one text frame per packet, `type` or `type:payload`, split at the first `:`.
//!
//! The client SDKs (wafer-client-sdk 0.8, wafer2-client-sdk 2.1) send `ping`, `close` and
//! `message:{"type":T,"content":C}`; they read `pong`, `timeout:N`, `close` and `message:{...}`. They throw
//! on a `message:` whose payload is not a JSON object (they read `payload.type` unguarded), so this module
//! only ever encodes objects, and everything a client sends is decoded into [`ClientPacket`] or refused as
//! [`ClientPacket::Invalid`] (never echoed back).

use serde::Serialize;
use serde_json::Value;

/// A packet from a client.
#[derive(Debug, PartialEq)]
pub enum ClientPacket {
    Ping,
    Close,
    /// `message:{"type": T, "content": C}`; `content` is absent when the client sent none.
    Message {
        kind: String,
        content: Value,
    },
    /// Anything else: an unknown packet type, a `message:` payload that is not a JSON object with a string
    /// `type`. Dropped (logged), never relayed.
    Invalid(&'static str),
}

/// Longest message type accepted (the SDK uses it as an event name).
const MAX_TYPE_CHARS: usize = 64;

/// Decodes one text frame.
pub fn decode(frame: &str) -> ClientPacket {
    let (kind, payload) = match frame.split_once(':') {
        Some((kind, payload)) => (kind, Some(payload)),
        None => (frame, None),
    };
    match (kind, payload) {
        ("ping", _) => ClientPacket::Ping,
        ("close", _) => ClientPacket::Close,
        ("message", Some(payload)) => decode_message(payload),
        ("message", None) => ClientPacket::Invalid("message packet without payload"),
        _ => ClientPacket::Invalid("unknown packet type"),
    }
}

fn decode_message(payload: &str) -> ClientPacket {
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(payload) else {
        return ClientPacket::Invalid("message payload is not a JSON object");
    };
    let kind = match object.remove("type") {
        Some(Value::String(kind)) if !kind.is_empty() && kind.chars().count() <= MAX_TYPE_CHARS => {
            kind
        }
        _ => return ClientPacket::Invalid("message payload has no valid `type`"),
    };
    let content = object.remove("content").unwrap_or(Value::Null);
    ClientPacket::Message { kind, content }
}

/// `message:{"type":kind,"content":content}`: always an object payload.
pub fn message(kind: &str, content: &impl Serialize) -> String {
    #[derive(Serialize)]
    struct Payload<'a, C: Serialize> {
        #[serde(rename = "type")]
        kind: &'a str,
        content: &'a C,
    }
    let payload = serde_json::to_string(&Payload { kind, content })
        // Serialising a map or struct of JSON values cannot fail; keep the packet well-formed regardless.
        .unwrap_or_else(|_| format!("{{\"type\":{}}}", Value::String(kind.into())));
    format!("message:{payload}")
}

pub const PONG: &str = "pong";
pub const CLOSE: &str = "close";

/// `timeout:N`: the client pings every `seconds` and gives up on a pong after as long.
pub fn timeout(seconds: u64) -> String {
    format!("timeout:{seconds}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_what_the_sdks_send() {
        assert_eq!(decode("ping"), ClientPacket::Ping);
        assert_eq!(decode("close"), ClientPacket::Close);
        assert_eq!(
            decode(r#"message:{"type":"speak","content":{"word":"a:b"}}"#),
            ClientPacket::Message {
                kind: "speak".into(),
                content: json!({ "word": "a:b" })
            }
        );
        assert_eq!(
            decode(r#"message:{"type":"hi"}"#),
            ClientPacket::Message {
                kind: "hi".into(),
                content: Value::Null
            }
        );
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "pong",
            "message",
            "message:",
            "message:not json",
            "message:[1,2]",
            "message:\"speak\"",
            "message:null",
            r#"message:{"content":1}"#,
            r#"message:{"type":7}"#,
            r#"message:{"type":""}"#,
        ] {
            assert!(
                matches!(decode(bad), ClientPacket::Invalid(_)),
                "{bad:?} should be invalid"
            );
        }
        let long = format!(r#"message:{{"type":"{}"}}"#, "x".repeat(65));
        assert!(matches!(decode(&long), ClientPacket::Invalid(_)));
    }

    #[test]
    fn encodes_object_payloads_only() {
        let packet = message("people", &json!({ "total": 2 }));
        assert_eq!(packet, r#"message:{"type":"people","content":{"total":2}}"#);
        assert_eq!(
            decode(&packet),
            ClientPacket::Message {
                kind: "people".into(),
                content: json!({ "total": 2 })
            }
        );
        assert_eq!(timeout(15), "timeout:15");
    }
}

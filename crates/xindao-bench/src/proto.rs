//! Framing for the two protocols the harness speaks: xindao's JSON protocol v1 (docs/protocol.md) and
//! Socket.IO 4 (Engine.IO v4 over WebSocket). Both carry the same operations and results: the Socket.IO peer
//! server in `bench/peers/socketio` answers every ack with xindao's reply body (`{"ok", "result" | "error"}`)
//! and pushes `message` events with xindao's `Message` shape, so only the framing differs.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The real `xindao serve` binary.
    Xindao,
    /// The Socket.IO 4 peer server (`bench/peers/socketio/server.js`), state in memory.
    Socketio,
    /// The same peer persisting every message to SQLite (`server.js --sqlite`), group-committed per event-loop
    /// turn and acked after the commit, as xindao does.
    SocketioSqlite,
    /// A Mosquitto 2 MQTT broker (the Debian package's `mosquitto`), fan-out only: rooms are topics, publishers
    /// publish at QoS 1 (the broker's PUBACK is the ack), members subscribe at QoS 0; nothing is persisted.
    Mosquitto,
}

/// Why the WebSocket paths never see [`Target::Mosquitto`]: `main` runs it in the fan-out scenario only.
pub const MQTT_ONLY: &str =
    "mosquitto speaks MQTT, not WebSocket: only the fanout scenario drives it";

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Xindao => "xindao",
            Target::Socketio => "socketio",
            Target::SocketioSqlite => "socketio-sqlite",
            Target::Mosquitto => "mosquitto",
        }
    }

    /// The WebSocket URL to connect to, given the server's `http://host:port` base.
    pub fn ws_url(self, http_base: &str, token: &str) -> String {
        let base = http_base.replacen("http://", "ws://", 1);
        match self {
            Target::Xindao => format!("{base}/v1/ws?token={token}"),
            Target::Socketio | Target::SocketioSqlite => {
                format!("{base}/socket.io/?EIO=4&transport=websocket")
            }
            Target::Mosquitto => unreachable!("{}", MQTT_ONLY),
        }
    }

    /// One request frame. `args` is already-serialised JSON.
    pub fn request(self, id: u64, op: &str, args: &str) -> String {
        match self {
            Target::Xindao => format!(r#"{{"id":{id},"op":"{op}","args":{args}}}"#),
            Target::Socketio | Target::SocketioSqlite => format!(r#"42{id}["{op}",{args}]"#),
            Target::Mosquitto => unreachable!("{}", MQTT_ONLY),
        }
    }
}

/// A decoded incoming frame.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A reply to request `id`: `body` is the `result` (ok) or the `error` object.
    Reply {
        id: u64,
        ok: bool,
        body: Option<&'a RawValue>,
    },
    /// A server push (`message`, `member`, `hello`, ...).
    Push { event: &'a str, data: &'a RawValue },
    /// Engine.IO open packet `0{...}`.
    EioOpen,
    /// Engine.IO ping `2`: the client must answer `3`.
    EioPing,
    /// Socket.IO namespace connected `40{...}`.
    SioConnect,
    /// Socket.IO namespace refused `44{...}`.
    SioConnectError(&'a str),
    /// Anything else (Engine.IO pong, noop, unknown packets).
    Other,
}

#[derive(Deserialize)]
struct XFrame<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    event: Option<&'a str>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

impl<'a> XFrame<'a> {
    fn into_frame(self) -> Frame<'a> {
        if let (Some(event), Some(data)) = (self.event, self.data) {
            return Frame::Push { event, data };
        }
        match (self.id, self.ok) {
            (Some(id), Some(ok)) => Frame::Reply {
                id,
                ok,
                body: if ok { self.result } else { self.error },
            },
            _ => Frame::Other,
        }
    }
}

/// Decode one text frame of `target`'s protocol.
pub fn parse(target: Target, text: &str) -> anyhow::Result<Frame<'_>> {
    match target {
        Target::Xindao => Ok(serde_json::from_str::<XFrame>(text)?.into_frame()),
        Target::Socketio | Target::SocketioSqlite => parse_sio(text),
        Target::Mosquitto => anyhow::bail!(MQTT_ONLY),
    }
}

fn parse_sio(text: &str) -> anyhow::Result<Frame<'_>> {
    let bytes = text.as_bytes();
    let Some(&eio) = bytes.first() else {
        return Ok(Frame::Other);
    };
    match eio {
        b'0' => return Ok(Frame::EioOpen),
        b'2' => return Ok(Frame::EioPing),
        b'4' => {}
        _ => return Ok(Frame::Other),
    }
    // Engine.IO "message" packet: a Socket.IO packet follows.
    let rest = &text[1..];
    let Some(&sio) = rest.as_bytes().first() else {
        return Ok(Frame::Other);
    };
    let body = &rest[1..];
    match sio {
        b'0' => Ok(Frame::SioConnect),
        b'4' => Ok(Frame::SioConnectError(body)),
        b'2' => {
            // EVENT: optional ack id, then ["event", data]
            let json = body.trim_start_matches(|c: char| c.is_ascii_digit());
            let (event, data): (&str, &RawValue) = serde_json::from_str(json)?;
            Ok(Frame::Push { event, data })
        }
        b'3' => {
            // ACK: id then [payload]; the peer's payload is xindao's reply body.
            let digits = body.bytes().take_while(u8::is_ascii_digit).count();
            let id: u64 = body[..digits].parse()?;
            let (payload,): (XFrame,) = serde_json::from_str(&body[digits..])?;
            let ok = payload.ok.unwrap_or(false);
            Ok(Frame::Reply {
                id,
                ok,
                body: if ok { payload.result } else { payload.error },
            })
        }
        _ => Ok(Frame::Other),
    }
}

/// The fields of a `Message` the harness looks at.
#[derive(Deserialize, Debug)]
pub struct MsgLite<'a> {
    pub conversation_id: u64,
    pub seq: u64,
    #[serde(borrow)]
    pub content: &'a RawValue,
}

/// The custom content the harness sends: scheduled send time (µs since the generator's clock base) and the
/// sender's message index.
#[derive(Deserialize, Serialize, Debug, Clone, Copy)]
pub struct Payload {
    pub t: u64,
    pub k: u64,
}

#[derive(Deserialize)]
struct SendResult<'a> {
    #[serde(borrow)]
    message: MsgLite<'a>,
    #[serde(default)]
    duplicate: bool,
}

/// Decode a `send` result body into (message, duplicate).
pub fn send_result<'a>(body: &'a RawValue) -> anyhow::Result<(MsgLite<'a>, bool)> {
    let r: SendResult = serde_json::from_str(body.get())?;
    Ok((r.message, r.duplicate))
}

pub fn payload(msg: &MsgLite) -> anyhow::Result<Payload> {
    Ok(serde_json::from_str(msg.content.get())?)
}

/// Where a 1:1 peer's message number `k` stands after the last one received (`last`).
pub enum PeerOrder {
    /// The next one.
    Next,
    /// Later than the next: messages were skipped.
    Gap,
    /// Not newer than the last: delivered twice (or out of order).
    Repeat,
}

/// Classifies message `k` of a peer that numbers its messages 0, 1, 2, ...
pub fn peer_order(last: Option<u64>, k: u64) -> PeerOrder {
    match last {
        Some(last) if k <= last => PeerOrder::Repeat,
        Some(last) if k != last + 1 => PeerOrder::Gap,
        None if k != 0 => PeerOrder::Gap,
        _ => PeerOrder::Next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_io_packets() {
        assert!(matches!(
            parse(Target::Socketio, r#"0{"sid":"x","pingInterval":25000}"#).unwrap(),
            Frame::EioOpen
        ));
        assert!(matches!(
            parse(Target::Socketio, "2").unwrap(),
            Frame::EioPing
        ));
        assert!(matches!(
            parse(Target::Socketio, "3").unwrap(),
            Frame::Other
        ));
        assert!(matches!(
            parse(Target::Socketio, r#"40{"sid":"abc"}"#).unwrap(),
            Frame::SioConnect
        ));
        match parse(Target::Socketio, r#"44{"message":"unauthorized"}"#).unwrap() {
            Frame::SioConnectError(m) => assert!(m.contains("unauthorized")),
            f => panic!("{f:?}"),
        }
        match parse(Target::Socketio, r#"42["message",{"seq":3}]"#).unwrap() {
            Frame::Push { event, data } => {
                assert_eq!(event, "message");
                assert_eq!(data.get(), r#"{"seq":3}"#);
            }
            f => panic!("{f:?}"),
        }
        match parse(Target::Socketio, r#"4317[{"ok":true,"result":{"a":1}}]"#).unwrap() {
            Frame::Reply { id, ok, body } => {
                assert_eq!(id, 17);
                assert!(ok);
                assert_eq!(body.unwrap().get(), r#"{"a":1}"#);
            }
            f => panic!("{f:?}"),
        }
        match parse(
            Target::Socketio,
            r#"432[{"ok":false,"error":{"code":"forbidden"}}]"#,
        )
        .unwrap()
        {
            Frame::Reply { id, ok, body } => {
                assert_eq!(id, 2);
                assert!(!ok);
                assert!(body.unwrap().get().contains("forbidden"));
            }
            f => panic!("{f:?}"),
        }
    }

    #[test]
    fn xindao_frames() {
        match parse(Target::Xindao, r#"{"id":7,"ok":true,"result":{"ts":1}}"#).unwrap() {
            Frame::Reply {
                id: 7,
                ok: true,
                body,
            } => assert_eq!(body.unwrap().get(), r#"{"ts":1}"#),
            f => panic!("{f:?}"),
        }
        match parse(Target::Xindao, r#"{"event":"hello","data":{"protocol":1}}"#).unwrap() {
            Frame::Push { event, .. } => assert_eq!(event, "hello"),
            f => panic!("{f:?}"),
        }
        assert!(matches!(
            parse(
                Target::Xindao,
                r#"{"id":null,"ok":false,"error":{"code":"bad_request"}}"#
            )
            .unwrap(),
            Frame::Other
        ));
    }

    #[test]
    fn request_framing() {
        assert_eq!(
            Target::Xindao.request(3, "room_join", r#"{"conversation_id":5}"#),
            r#"{"id":3,"op":"room_join","args":{"conversation_id":5}}"#
        );
        assert_eq!(
            Target::Socketio.request(3, "room_join", r#"{"conversation_id":5}"#),
            r#"423["room_join",{"conversation_id":5}]"#
        );
    }

    #[test]
    fn message_payload() {
        let body = RawValue::from_string(
            r#"{"message":{"id":1,"conversation_id":5,"seq":2,"sender_id":9,"cmid":"d1-0","kind":"custom","content":{"t":123,"k":4},"ts":1},"duplicate":false}"#
                .to_string(),
        )
        .unwrap();
        let (m, dup) = send_result(&body).unwrap();
        assert!(!dup);
        assert_eq!((m.conversation_id, m.seq), (5, 2));
        let p = payload(&m).unwrap();
        assert_eq!((p.t, p.k), (123, 4));
    }
}

//! One Wafer tunnel: the WebSocket a Wafer client SDK opens at the URL from `GET <prefix>/tunnel`.
//!
//! The upgrade is never refused: the SDKs wait forever on a refused upgrade, with no retry and no error.
//! Everything is checked after it (ticket, connection caps, shutdown); a tunnel that cannot be served is
//! closed *without* a `close` packet, which the SDK takes as a network loss: it fetches a new URL and
//! retries (5 times, 1 to 5 s apart). A `close` packet goes first only when the server means "stop" (a
//! logout, a newer tunnel of the same session, flooding), as the SDK then closes for good.
//!
//! The heartbeat is the client's: `timeout:N` at open, then it pings every N s and only a `pong` resets its
//! timer; the server answers each `ping` and drops a tunnel silent for 3 N (a dead phone sends no close).
//! `speak {word}` becomes a xindao text message in the live room (stored, with its seq, visible to xindao
//! clients); the room's messages come back from the hub and go out as `speak {who, word}`. Packets that are
//! not text, not valid or not an object are dropped here and never reach another client.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use governor::{Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

use super::packet::{self, ClientPacket};
use super::room::RoomSignal;
use super::session::who;
use super::{Mount, Shared};
use crate::app::App;
use crate::auth::Session;
use crate::chat::Caller;
use crate::hub::{outbox, Outbound, Queue};
use crate::model::{ConversationId, MessageKind};
use crate::peer::{Peer, PerIpGuard};
use crate::protocol::op::{SendArgs, SentKind};
use crate::protocol::Op;

/// How a tunnel ends.
enum End {
    /// The socket is gone (or the client sent `close`): answer its close frame if it can take one.
    Gone,
    /// Close the socket with this code and no `close` packet: the SDK reconnects.
    Drop(u16, &'static str),
    /// Send the `close` packet, then close with this code: the SDK stops.
    Kick(u16, &'static str),
}

/// Per-tunnel message ids, for the `cmid` of the xindao messages it sends.
static SPEAK_SEQ: AtomicU64 = AtomicU64::new(1);

/// `GET <prefix>/tunnel/ws?tunnelId=…&ticket=…`: always upgrades; see the module comment.
pub async fn upgrade(
    State(app): State<Arc<App>>,
    Extension(mount): Extension<Arc<Mount>>,
    Extension(shared): Extension<Arc<Shared>>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let mut ticket = None;
    let mut tunnel_id = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "ticket" => ticket = Some(value.into_owned()),
            "tunnelId" => tunnel_id = Some(value.into_owned()),
            _ => {}
        }
    }
    let ip = crate::peer::client_ip(&app.config.trusted_proxies, peer, &headers);
    let frame_limit = app.config.max_frame_bytes;
    let tracker = app.tracker.clone();
    ws.max_message_size(frame_limit)
        .max_frame_size(frame_limit)
        .on_upgrade(move |socket| {
            tracker.track_future(run(app, mount, shared, socket, ticket, tunnel_id, ip))
        })
}

/// Checks what the upgrade could not refuse: the ticket, shutdown and the connection caps.
async fn admit(
    app: &App,
    ticket: Option<&str>,
    ip: IpAddr,
) -> Result<(Session, tokio::sync::OwnedSemaphorePermit, PerIpGuard), End> {
    if app.shutdown.is_cancelled() {
        return Err(End::Drop(1001, "server is shutting down"));
    }
    let session = app
        .auth
        .redeem_ticket(ticket.unwrap_or_default())
        .await
        .map_err(|_| End::Drop(4001, "invalid, used or expired tunnel ticket"))?;
    let busy = End::Drop(1013, "too many connections, retry");
    let permit = app
        .connection_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| End::Drop(1013, "server full, retry"))?;
    let per_ip = app.sockets_per_ip.try_acquire(ip).ok_or(busy)?;
    if app.hub.connections_of(session.user_id) >= app.config.max_connections_per_user {
        return Err(End::Drop(1013, "too many connections for this user"));
    }
    Ok((session, permit, per_ip))
}

async fn run(
    app: Arc<App>,
    mount: Arc<Mount>,
    shared: Arc<Shared>,
    mut socket: WebSocket,
    ticket: Option<String>,
    tunnel_id: Option<String>,
    ip: IpAddr,
) {
    let (session, _permit, _per_ip) = match admit(&app, ticket.as_deref(), ip).await {
        Ok(admitted) => admitted,
        Err(end) => return finish(&mut socket, end).await,
    };
    let config = &app.config;
    let (outbox, queue) = outbox(config.outbound_queue, config.max_outstanding_bytes);
    let registered = match app.chat.connect(&session, outbox).await {
        Ok((_, registered)) => registered,
        Err(error) => {
            tracing::warn!(%error, "wafer tunnel: cannot register");
            return finish(&mut socket, End::Drop(1011, "cannot register")).await;
        }
    };
    let caller = Caller {
        user_id: session.user_id,
        conn_id: registered.conn_id,
    };
    app.metrics.connections.inc();
    app.metrics.connections_opened.inc();
    let end = match mount.room.join(&app, caller).await {
        Ok(room) => {
            let me = who(&app, &shared, caller.user_id).await;
            let (tx, rx) = mpsc::channel(config.outbound_queue.max(1));
            tracing::debug!(
                tunnel = tunnel_id.as_deref().unwrap_or("-"),
                user = caller.user_id,
                "wafer tunnel open"
            );
            let mut tunnel = Tunnel {
                app: &app,
                shared: &shared,
                socket: &mut socket,
                caller,
                room,
                me: me.clone(),
            };
            let opened = tunnel
                .write(packet::timeout(config.wafer_heartbeat_secs))
                .await;
            match opened {
                Err(end) => end,
                Ok(()) => {
                    mount.room.enter(caller.conn_id, session.token_hash, me, tx);
                    let end = tunnel.serve(queue, rx).await;
                    mount.room.leave(caller.conn_id);
                    end
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, "wafer tunnel: cannot join the live room");
            End::Drop(1011, "cannot join the room")
        }
    };
    app.chat.disconnect(caller);
    app.metrics.connections.dec();
    finish(&mut socket, end).await;
}

/// A frame over `max_frame_bytes` closes with 1009 (no `close` packet: the SDK reconnects); any other read
/// error means the socket is gone.
fn read_error(error: axum::Error) -> End {
    use tungstenite::error::Error as WsError;
    match error.into_inner().downcast::<WsError>() {
        Ok(ws) if matches!(*ws, WsError::Capacity(_)) => End::Drop(1009, "frame too large"),
        _ => End::Gone,
    }
}

/// Closes the socket as `end` says, waiting briefly for the client's close frame.
async fn finish(socket: &mut WebSocket, end: End) {
    let (code, reason) = match end {
        End::Gone => (1000, "bye"),
        End::Drop(code, reason) => (code, reason),
        End::Kick(code, reason) => {
            let packet = Message::Text(Utf8Bytes::from_static(packet::CLOSE));
            let _ = timeout(Duration::from_secs(2), socket.send(packet)).await;
            (code, reason)
        }
    };
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    let _ = timeout(Duration::from_secs(2), async {
        socket.send(close).await.ok()?;
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        Some(())
    })
    .await;
}

struct Tunnel<'a> {
    app: &'a App,
    shared: &'a Shared,
    socket: &'a mut WebSocket,
    caller: Caller,
    room: ConversationId,
    me: Arc<Value>,
}

/// The fields of a hub `message` push that a tunnel reads.
#[derive(Deserialize)]
struct Push {
    data: PushedMessage,
}

#[derive(Deserialize)]
struct PushedMessage {
    conversation_id: ConversationId,
    sender_id: i64,
    #[serde(default)]
    kind: Option<MessageKind>,
    #[serde(default)]
    content: Value,
}

impl Tunnel<'_> {
    async fn write(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), End> {
        let write = self.socket.send(Message::Text(text.into()));
        match timeout(self.app.config.write_timeout(), write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Drop(4009, "slow consumer: write timeout")),
        }
    }

    async fn serve(&mut self, mut queue: Queue, mut room: mpsc::Receiver<RoomSignal>) -> End {
        let config = &self.app.config;
        let idle = Duration::from_secs(config.wafer_heartbeat_secs * 3);
        let mut deadline = Instant::now() + idle;
        let quota =
            Quota::per_second(NonZeroU32::new(config.rate_per_sec).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(config.rate_burst).unwrap_or(NonZeroU32::MIN));
        let limiter = RateLimiter::direct(quota);
        let shutdown = self.app.shutdown.clone();
        loop {
            let step = tokio::select! {
                _ = shutdown.cancelled() => Err(End::Drop(1001, "server is shutting down")),
                _ = sleep_until(deadline) => Err(End::Drop(4010, "no ping within 3 heartbeats")),
                frame = self.socket.recv() => {
                    deadline = Instant::now() + idle;
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            if limiter.check().is_err() {
                                Err(End::Kick(4008, "too many packets"))
                            } else {
                                self.packet(&text).await
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            tracing::debug!(user = self.caller.user_id, "wafer tunnel: binary frame dropped");
                            Ok(())
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                        Some(Err(error)) => Err(read_error(error)),
                        Some(Ok(Message::Close(_))) | None => Err(End::Gone),
                    }
                }
                out = queue.recv() => match out {
                    Some(Outbound::Frame(frame) | Outbound::Timed(frame, _)) => {
                        let bytes = frame.text.len();
                        let done = self.relay(&frame.text).await;
                        queue.budget.release(bytes);
                        done
                    }
                    Some(Outbound::Close(code, reason)) => Err(End::Kick(code, reason)),
                    // Never queued here: a Wafer tunnel's queue has no socket to write directly.
                    Some(Outbound::Raw(_)) => Err(End::Drop(1011, "internal error")),
                    None => Err(End::Drop(4009, "slow consumer")),
                },
                signal = room.recv() => match signal {
                    Some(RoomSignal::Packet(packet)) => self.write(packet).await,
                    Some(RoomSignal::Replaced) => Err(End::Kick(4001, "replaced by a newer tunnel")),
                    None => Err(End::Drop(4009, "slow consumer")),
                },
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// One packet from the client.
    async fn packet(&mut self, text: &str) -> Result<(), End> {
        match packet::decode(text) {
            ClientPacket::Ping => self.write(packet::PONG).await,
            ClientPacket::Close => Err(End::Gone),
            ClientPacket::Message { kind, content } if kind == "speak" => self.speak(content).await,
            ClientPacket::Message { kind, .. } => {
                tracing::debug!(user = self.caller.user_id, %kind, "wafer tunnel: message type ignored");
                Ok(())
            }
            ClientPacket::Invalid(why) => {
                tracing::debug!(
                    user = self.caller.user_id,
                    why,
                    "wafer tunnel: packet dropped"
                );
                Ok(())
            }
        }
    }

    /// `speak {word}`: stored as a text message of the room; everyone else gets it from the hub, the
    /// speaker's own tunnel here, once it is committed.
    async fn speak(&mut self, content: Value) -> Result<(), End> {
        let Some(word) = content.get("word").and_then(Value::as_str) else {
            tracing::debug!(
                user = self.caller.user_id,
                "wafer tunnel: speak without a string word"
            );
            return Ok(());
        };
        let send = Op::Send(SendArgs {
            conversation_id: Some(self.room),
            to_user: None,
            cmid: format!(
                "wafer-{}-{}",
                self.caller.conn_id,
                SPEAK_SEQ.fetch_add(1, Ordering::Relaxed)
            ),
            kind: SentKind::Known(MessageKind::Text),
            content: Value::String(word.to_string()),
        });
        match self.app.chat.handle(self.caller, send).await {
            Ok(_) => {
                let echo = json!({ "who": *self.me, "word": word });
                self.write(packet::message("speak", &echo)).await
            }
            Err(error) => {
                tracing::debug!(user = self.caller.user_id, %error, "wafer tunnel: speak refused");
                Ok(())
            }
        }
    }

    /// A hub push: the room's messages go out as Wafer messages, everything else is not for this client.
    async fn relay(&mut self, frame: &str) -> Result<(), End> {
        if !frame.starts_with("{\"event\":\"message\"") {
            return Ok(());
        }
        let Ok(Push { data }) = serde_json::from_str::<Push>(frame) else {
            return Ok(());
        };
        if data.conversation_id != self.room {
            return Ok(());
        }
        let packet = match (data.kind.unwrap_or_default(), &data.content) {
            (MessageKind::Text, Value::String(word)) => {
                let who = who(self.app, self.shared, data.sender_id).await;
                packet::message("speak", &json!({ "who": *who, "word": word }))
            }
            // A xindao client's custom `{type, content}` reaches Wafer clients as that message type.
            (MessageKind::Custom, Value::Object(custom)) => match custom.get("type") {
                Some(Value::String(kind)) if !kind.is_empty() => {
                    packet::message(kind, custom.get("content").unwrap_or(&Value::Null))
                }
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        self.write(packet).await
    }
}

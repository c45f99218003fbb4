//! Tunnel-service mode, one tunnel: the client's socket, and the signed callbacks to its business server.
//!
//! The socket side follows the standalone tunnel's rules (`tunnel.rs`): the upgrade is never refused (an
//! unknown, used or expired tunnel id is closed with 4001 and no `close` packet, so the SDK asks its business
//! server for a new URL), `timeout:N` at open, `pong` for every `ping`, a tunnel silent for 3 N dropped, only
//! text frames with object payloads passed on.
//!
//! Callbacks go out one at a time, in order (`connect`, each `message` exactly as the client sent its
//! payload, then exactly one `close`), to `receiveUrl` as `{data: "<JSON string>", signature}`. A business
//! server that is down or answers 5xx is retried with backoff ([`RETRIES`]); if it stays down, or refuses the
//! `connect` (a 4xx), the tunnel is closed with a `close` packet: the client learns it, nothing is dropped
//! silently. Pushes from the business server (`service.rs`) reach the socket independently of callbacks in
//! flight.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::packet::{self, ClientPacket};
use super::service::{Command, TunnelService};
use crate::app::App;

/// Waits before each retry of a callback: about 6 s in all, then the tunnel is closed.
const RETRIES: [Duration; 5] = [
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1600),
    Duration::from_millis(3200),
];

/// Callbacks queued per tunnel; a client outrunning its business server further than this is closed.
const CALLBACKS_QUEUED: usize = 256;

enum Callback {
    Connect,
    Message(String),
    Close,
}

pub async fn upgrade(
    State(app): State<Arc<App>>,
    Extension(service): Extension<Arc<TunnelService>>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let tunnel_id = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "tunnelId")
        .map(|(_, v)| v.into_owned());
    let limit = app.config.max_frame_bytes;
    let tracker = app.tracker.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| tracker.track_future(run(app, service, socket, tunnel_id)))
}

async fn close(socket: &mut WebSocket, packet_first: bool, code: u16, reason: &'static str) {
    if packet_first {
        let close = Message::Text(Utf8Bytes::from_static(packet::CLOSE));
        let _ = timeout(Duration::from_secs(2), socket.send(close)).await;
    }
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    let _ = timeout(Duration::from_secs(2), async {
        socket.send(frame).await.ok()?;
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        Some(())
    })
    .await;
}

async fn run(
    app: Arc<App>,
    service: Arc<TunnelService>,
    mut socket: WebSocket,
    tunnel_id: Option<String>,
) {
    let Some((id, receive_url)) =
        tunnel_id.and_then(|id| service.take_issued(&id).map(|url| (id, url)))
    else {
        return close(&mut socket, false, 4001, "unknown, used or expired tunnel").await;
    };
    if app.shutdown.is_cancelled() {
        return close(&mut socket, false, 1001, "server is shutting down").await;
    }
    let Ok(_permit) = app.connection_slots.clone().try_acquire_owned() else {
        return close(&mut socket, false, 1013, "server full, retry").await;
    };
    let config = &app.config;
    let (tx, mut commands) = mpsc::channel(config.outbound_queue.max(1));
    service.opened(&id, tx.clone());
    let (callbacks, queue) = mpsc::channel(CALLBACKS_QUEUED);
    let worker = tokio::spawn(deliver_all(
        service.clone(),
        receive_url,
        id.clone(),
        queue,
        tx,
    ));
    let _ = callbacks.try_send(Callback::Connect);
    app.metrics.connections.inc();
    let idle = Duration::from_secs(config.wafer_heartbeat_secs * 3);
    let mut deadline = Instant::now() + idle;
    let write_timeout = config.write_timeout();
    let opened = timeout(
        write_timeout,
        socket.send(Message::Text(
            packet::timeout(config.wafer_heartbeat_secs).into(),
        )),
    )
    .await;
    let shutdown = app.shutdown.clone();
    // (close packet first?, code, reason); `None`: the socket is gone or the client closed.
    let end: Option<(bool, u16, &'static str)> = if !matches!(opened, Ok(Ok(()))) {
        None
    } else {
        loop {
            let out: Option<String> = tokio::select! {
                _ = shutdown.cancelled() => break Some((false, 1001, "server is shutting down")),
                _ = sleep_until(deadline) => break Some((false, 4010, "no ping within 3 heartbeats")),
                command = commands.recv() => match command {
                    Some(Command::Message(payload)) => Some(format!("message:{payload}")),
                    Some(Command::Close) | None => break Some((true, 1000, "closed by the business server")),
                },
                frame = socket.recv() => {
                    deadline = Instant::now() + idle;
                    match frame {
                        Some(Ok(Message::Text(text))) => match packet::decode(&text) {
                            ClientPacket::Ping => Some(packet::PONG.to_string()),
                            ClientPacket::Close => break None,
                            ClientPacket::Message { kind, content } => {
                                // The payload as the client sent it, once known to be an object.
                                let payload = text.split_once(':').map_or("", |(_, p)| p).to_string();
                                tracing::trace!(%kind, ?content, "wafer tunnel service: message");
                                if callbacks.try_send(Callback::Message(payload)).is_err() {
                                    break Some((true, 4008, "the business server is not keeping up"));
                                }
                                None
                            }
                            ClientPacket::Invalid(why) => {
                                tracing::debug!(why, "wafer tunnel service: packet dropped");
                                None
                            }
                        },
                        Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => None,
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                    }
                }
            };
            if let Some(text) = out {
                if !matches!(
                    timeout(write_timeout, socket.send(Message::Text(text.into()))).await,
                    Ok(Ok(()))
                ) {
                    break Some((false, 4009, "slow consumer"));
                }
            }
        }
    };
    service.closed(&id);
    // Exactly one close callback, after everything the client sent.
    let _ = timeout(Duration::from_secs(1), callbacks.send(Callback::Close)).await;
    drop(callbacks);
    app.metrics.connections.dec();
    match end {
        Some((packet_first, code, reason)) => close(&mut socket, packet_first, code, reason).await,
        None => close(&mut socket, false, 1000, "bye").await,
    }
    let _ = worker.await;
}

/// What became of one callback.
enum Outcome {
    Delivered,
    /// A 4xx: the business server does not want it (for `connect`: the tunnel).
    Refused(u16),
    /// Down or failing through every retry.
    Failed,
}

async fn deliver_all(
    service: Arc<TunnelService>,
    receive_url: String,
    tunnel_id: String,
    mut queue: mpsc::Receiver<Callback>,
    tunnel: mpsc::Sender<Command>,
) {
    let mut given_up = false;
    while let Some(callback) = queue.recv().await {
        let (kind, content) = match &callback {
            Callback::Connect => ("connect", None),
            Callback::Message(payload) => ("message", Some(payload.as_str())),
            Callback::Close => ("close", None),
        };
        if given_up && kind != "close" {
            continue;
        }
        let mut data = json!({ "tunnelId": tunnel_id, "type": kind });
        if let Some(content) = content {
            data["content"] = Value::String(content.to_string());
        }
        let data = data.to_string();
        let body = json!({ "signature": service.sign(&data), "data": data });
        let outcome = deliver(&service, &receive_url, &body, kind == "close").await;
        match (kind, outcome) {
            (_, Outcome::Delivered) => {}
            ("connect", Outcome::Refused(status)) => {
                tracing::info!(
                    status,
                    "wafer tunnel service: connect refused, closing the tunnel"
                );
                given_up = true;
                let _ = tunnel.try_send(Command::Close);
            }
            (_, Outcome::Refused(status)) => {
                tracing::info!(status, kind, "wafer tunnel service: callback refused");
            }
            ("close", Outcome::Failed) => {}
            (_, Outcome::Failed) => {
                tracing::warn!(
                    kind,
                    "wafer tunnel service: business server unreachable, closing the tunnel"
                );
                given_up = true;
                let _ = tunnel.try_send(Command::Close);
            }
        }
    }
}

async fn deliver(service: &TunnelService, url: &str, body: &Value, once: bool) -> Outcome {
    let mut waits = RETRIES.iter();
    loop {
        let answer = service.http.post(url).json(body).send().await;
        match answer.map(|r| r.status().as_u16()) {
            Ok(status) if (200..300).contains(&status) => return Outcome::Delivered,
            Ok(status) if (400..500).contains(&status) && status != 408 && status != 429 => {
                return Outcome::Refused(status)
            }
            Ok(_) | Err(_) => match waits.next() {
                Some(wait) if !once => sleep(*wait).await,
                _ => return Outcome::Failed,
            },
        }
    }
}

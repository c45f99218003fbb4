//! One connection's future, run by its shard: it writes its socket, but for the pushes its shard writes while
//! it is parked with nothing unsent (`hub::direct`).
//!
//! The task `select!`s over its socket, its bounded push queue, a heartbeat timer and server shutdown, which
//! keeps an idle connection to a few kilobytes. Requests are answered one at a time in arrival order;
//! pushes keep flowing while a request waits for the store. Writes, bounded in time and bytes, are in
//! `socket.rs`. Requests are rate-limited per connection, and so are the refusals: a client that keeps
//! sending past its limit is closed with 4008 (`limits.rs`). Credentials that end (a JWT's `exp`) close the
//! connection then, unless `auth_refresh` replaced them (`credentials.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

use super::credentials::{Credentials, TOKEN_EXPIRED};
use super::limits::{Admission, Limits};
use super::socket::{within, Conn};
use super::upgrade::Socket;
use super::wait::{next_event, Event, WakeFlag};
use super::{
    End, CLOSE_BANNED, CLOSE_FLOODING, CLOSE_GOING_AWAY, CLOSE_HEARTBEAT_TIMEOUT, CLOSE_INTERNAL,
    CLOSE_SESSION_ENDED,
};
use crate::app::App;
use crate::auth::Session;
use crate::chat::Caller;
use crate::config::Config;
use crate::error::Error;
use crate::hub::{close_reason, Outbox};
use crate::metrics::CloseLabels;
use crate::model::{Millis, User};
use crate::obs::hops::{self, hops};
use crate::obs::request_id;
use crate::obs::timing::{self, ReplyTiming, Spent};
use crate::protocol::{self, Op, PROTOCOL_VERSION};

const SESSION_EXPIRED: End = End::Close(CLOSE_SESSION_ENDED, "session expired: log in again");

/// How long a server-initiated close waits for the client's close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one connection from registration to close. `conn` is used in place, never moved into a local: an async
/// fn keeps its arguments in its state, and a moved copy would take the same room again in every task.
pub(super) async fn run(
    app: Arc<App>,
    mut conn: Conn,
    outbox: Outbox,
    session: Session,
    _permit: OwnedSemaphorePermit,
) {
    // Registering is part of the upgrade request (its `user.connected` event carries the upgrade's id).
    let upgrade_id = request_id::RequestId(conn.upgrade_id.clone());
    let connecting = request_id::scope(upgrade_id, app.chat.connect(&session, outbox));
    let (user, registered) = match connecting.await {
        Ok(connected) => connected,
        Err(error) => {
            let (code, reason) = match error {
                Error::Unauthorized => (CLOSE_SESSION_ENDED, "user not found"),
                Error::Banned => (CLOSE_BANNED, close_reason(CLOSE_BANNED)),
                error => {
                    tracing::warn!(%error, "cannot register connection");
                    (CLOSE_INTERNAL, "cannot register")
                }
            };
            let _ = conn.socket.send(close_message(code, reason)).await;
            return;
        }
    };
    let caller = Caller {
        user_id: session.user_id,
        conn_id: registered.conn_id,
    };
    let hello = hello(&app.config, user, caller, session.expires_at);
    app.metrics.connections.inc();
    app.metrics.connections_opened.inc();
    let span = tracing::info_span!("ws", conn = caller.conn_id, user = caller.user_id);
    let end = serve(&app, &mut conn, caller, session, hello)
        .instrument(span)
        .await;
    app.chat.disconnect(caller);
    app.metrics.connections.dec();
    match end {
        End::Close(code, reason) => {
            app.metrics
                .closes
                .get_or_create(&CloseLabels { code })
                .inc();
            // A push its shard wrote in part is finished first: the close frame must start on a frame
            // boundary (only a shutdown is seen before the queue, `wait.rs`).
            if conn.write_leading_raw().await.is_ok() {
                Box::pin(close_gracefully(&mut conn.socket, code, reason)).await;
            }
        }
        End::Abort(code, reason) => {
            app.metrics
                .closes
                .get_or_create(&CloseLabels { code })
                .inc();
            tracing::info!(
                user = caller.user_id,
                conn = caller.conn_id,
                reason,
                "connection dropped"
            );
        }
        End::Gone => {}
    }
    tracing::debug!(
        user = caller.user_id,
        conn = caller.conn_id,
        "connection closed"
    );
}

/// Sends a close frame and waits briefly for the peer's answer. Dropping the socket at once could make the
/// kernel reset the connection and throw away the close frame before the client has read it.
async fn close_gracefully(socket: &mut Socket, code: u16, reason: &'static str) {
    let handshake = async {
        socket.send(close_message(code, reason)).await.ok()?;
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        Some(())
    };
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, handshake).await;
}

fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: tungstenite::Utf8Bytes::from_static(reason),
    }))
}

/// The greeting, the first frame of every connection.
fn hello(config: &Config, user: User, caller: Caller, expires_at: Option<Millis>) -> Utf8Bytes {
    protocol::event(
        "hello",
        &json!({
            "protocol": PROTOCOL_VERSION,
            "user": user,
            "connection_id": caller.conn_id,
            "expires_at": expires_at,
            "heartbeat_ms": config.heartbeat_ms,
            "idle_timeout_ms": config.idle_timeout_ms,
            "limits": {
                "max_frame_bytes": config.max_frame_bytes,
                "max_text_chars": config.max_text_chars,
                "max_custom_bytes": config.max_custom_bytes,
                "history_page_max": config.history_page_max,
                "rate_per_sec": config.rate_per_sec,
                "rate_burst": config.rate_burst,
                "max_outstanding_bytes": config.max_outstanding_bytes,
                "recall_window_secs": config.recall_window_secs,
            },
        }),
    )
}

/// How often an open connection re-checks its session: a tenth of the session's lifetime, the granularity at
/// which a use extends it ([`crate::rules::touch_session`]), so the check keeps the session alive while the
/// socket is open and costs one read per connection per `session_ttl / 10`.
fn session_check_interval(config: &Config) -> Duration {
    config.session_ttl() / 10
}

async fn serve(
    app: &App,
    conn: &mut Conn,
    caller: Caller,
    session: Session,
    hello: Utf8Bytes,
) -> End {
    let config = &app.config;
    if let Err(end) = conn.write(hello).await {
        return end;
    }
    let limits = Limits::new(config);
    let mut last_heard = Instant::now();
    let mut session_checked = Instant::now();
    let period = config.heartbeat() / 2;
    let mut heartbeat = tokio::time::interval(period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut credentials = Credentials::new(session);
    credentials.arm(&mut heartbeat, period);
    // Made once: a fresh `cancelled()` future per loop turn would lock the token's waiter list twice per push.
    let shutdown = app.shutdown.cancelled();
    tokio::pin!(shutdown);
    let flag = WakeFlag::new();
    // Whether the last turn only wrote pushes, at once: the other waits are still registered with the flag.
    let mut quiet = false;
    loop {
        // Its shard runs this future outside tokio's budget (`shards.rs`): give the others their turn.
        conn.turn().await;
        if !std::mem::take(&mut quiet) {
            flag.set();
        }
        // A frame the client sent while a write waited comes first; then a write the socket held back.
        let incoming = if let Some(message) = conn.heard.take() {
            last_heard = Instant::now();
            Some(Ok(message))
        } else if conn.stalled() {
            if let Err(end) = conn.flush().await {
                return end;
            }
            continue;
        } else {
            match next_event(conn, &flag, shutdown.as_mut(), &mut heartbeat).await {
                Event::Shutdown => {
                    return End::Close(CLOSE_GOING_AWAY, "server restarting: reconnect")
                }
                Event::Push(outbound) => {
                    if let Err(end) = conn.write_pushes(outbound).await {
                        return end;
                    }
                    quiet = !conn.take_waited();
                    continue;
                }
                Event::Incoming(incoming) => {
                    last_heard = Instant::now();
                    incoming
                }
                Event::Tick => {
                    if credentials.expired() {
                        return End::Close(CLOSE_SESSION_ENDED, TOKEN_EXPIRED);
                    }
                    let silent = last_heard.elapsed();
                    if silent >= config.idle_timeout() {
                        return End::Close(CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout");
                    }
                    if session_checked.elapsed() >= session_check_interval(config) {
                        session_checked = Instant::now();
                        match app.auth.check_session(credentials.session.token_hash).await {
                            Ok(_) => {}
                            Err(Error::Unauthorized) => return SESSION_EXPIRED,
                            // The store is unreachable: keep the connection, check again next time.
                            Err(error) => tracing::debug!(%error, "cannot check the session"),
                        }
                    }
                    if silent >= config.heartbeat() {
                        let ping = conn.socket.send(Message::Ping(Default::default()));
                        if !matches!(within(conn.write_timeout, ping).await, Some(Ok(()))) {
                            return End::Gone;
                        }
                    }
                    credentials.arm(&mut heartbeat, period);
                    continue;
                }
            }
        };
        // Boxed: a request's state (~1 KB) lives only while it is answered, not in every idle task.
        let received = receive(
            app,
            conn,
            caller,
            &limits,
            &mut credentials,
            incoming,
            last_heard,
        );
        if let Err(end) = Box::pin(received).await {
            return end;
        }
        // An `auth_refresh` may have moved the deadline.
        credentials.arm(&mut heartbeat, period);
    }
}

/// Handles one frame the client sent: a request is answered; a close, an error or the end of the stream ends
/// the connection.
async fn receive(
    app: &App,
    conn: &mut Conn,
    caller: Caller,
    limits: &Limits,
    credentials: &mut Credentials,
    incoming: Option<Result<Message, tungstenite::Error>>,
    read_at: Instant,
) -> Result<(), End> {
    let text = match incoming {
        None => return Err(End::Gone),
        Some(Ok(Message::Close(_))) => {
            // tungstenite has queued the echo of the client's close frame: send it.
            let _ = within(conn.write_timeout, conn.socket.flush()).await;
            return Err(End::Gone);
        }
        Some(Err(error)) => return Err(End::from_read_error(error)),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return Ok(()),
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(Message::Binary(bytes))) => match tungstenite::Utf8Bytes::try_from(bytes) {
            Ok(text) => text,
            Err(_) => {
                let error = Error::BadRequest("binary frame is not UTF-8 JSON".into());
                return conn.write(protocol::error_reply(None, &error)).await;
            }
        },
    };
    answer(app, conn, caller, limits, credentials, &text, read_at).await
}

/// Decodes, rate-limits and runs one request, writing pushes while it waits, then writes its reply.
async fn answer(
    app: &App,
    conn: &mut Conn,
    caller: Caller,
    limits: &Limits,
    credentials: &mut Credentials,
    text: &str,
    read_at: Instant,
) -> Result<(), End> {
    let started = Instant::now();
    let wait = match limits.admit() {
        Admission::Run => None,
        Admission::Wait(wait) => Some(wait),
        Admission::Flooding => return Err(End::Close(CLOSE_FLOODING, "flooding")),
    };
    if let Some(wait) = wait {
        let id = protocol::decode(text).ok().map(|r| r.id);
        let error = Error::RateLimited {
            retry_after_ms: wait.as_millis().max(1) as u64,
        };
        app.metrics.record_request("-", error.code(), 0.0);
        hops::error(error.code());
        return conn.write(protocol::error_reply(id.as_ref(), &error)).await;
    }
    let request = match protocol::decode(text) {
        Ok(request) => request,
        Err((id, error)) => {
            app.metrics.record_request("-", error.code(), 0.0);
            hops::error(error.code());
            return conn.write(protocol::error_reply(id.as_ref(), &error)).await;
        }
    };
    let op_name = request.op.name();
    hops::observe(&hops().queued, started.saturating_duration_since(read_at));
    // Every line about the request names it: the connection's span gives `conn`, this one the client's id.
    let span = tracing::info_span!("req", id = %request.id, op = op_name);
    let spent = Spent::new();
    let request_id = request_id::for_ws_request(&conn.upgrade_id, &request.id);
    crate::obs::otel::attribute(&span, "request_id", || request_id.0.to_string());
    let handling = request_id::scope(
        request_id,
        timing::scope(spent.clone(), async {
            match request.op {
                Op::AuthRefresh(args) => credentials.refresh(app, caller, args).await,
                op => app.chat.handle(caller, op).await,
            }
        }),
    )
    .instrument(span.clone());
    tokio::pin!(handling);
    // Pushes are written meanwhile, unless the socket still holds back earlier bytes: then they wait in the
    // queue, counted in the budget.
    let result = loop {
        conn.turn().await;
        tokio::select! {
            result = &mut handling => break result,
            outbound = conn.queue.recv(), if !conn.stalled() => conn.write_pushes(outbound).await?,
        }
    };
    let mut reply = match &result {
        Ok(value) => protocol::ok_reply(&request.id, value),
        Err(error) => {
            if let Error::Internal(detail) = error {
                span.in_scope(|| tracing::error!(%detail, "internal error"));
            }
            hops::error(error.code());
            protocol::error_reply(Some(&request.id), error)
        }
    };
    if request.timing {
        let node = crate::obs::node_name(&app.config);
        reply = ReplyTiming::new(read_at, started, &spent, node).attach(reply);
    }
    let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "ok");
    span.in_scope(|| {
        tracing::debug!(
            outcome,
            dur_us = started.elapsed().as_micros() as u64,
            "ws request"
        )
    });
    app.metrics
        .record_request(op_name, outcome, started.elapsed().as_secs_f64());
    conn.write(reply).await
}

//! One connection's task: the only writer of its socket.
//!
//! The task `select!`s over its socket, its bounded push queue, a heartbeat timer and server shutdown, which
//! keeps an idle connection to a few kilobytes. Requests are answered one at a time in arrival order;
//! pushes keep flowing while a request waits for the store. Writes are gathered: a reply and the pushes
//! queued behind it, or up to [`WRITE_BATCH`] queued pushes, leave in one socket write and one flush.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde_json::json;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::{
    End, CLOSE_FLOODING, CLOSE_GOING_AWAY, CLOSE_HEARTBEAT_TIMEOUT, CLOSE_INTERNAL,
    CLOSE_SESSION_ENDED, CLOSE_SLOW_CONSUMER,
};
use crate::app::App;
use crate::auth::Session;
use crate::chat::Caller;
use crate::config::Config;
use crate::error::Error;
use crate::hub::{Outbound, Outbox};
use crate::metrics::CloseLabels;
use crate::model::User;
use crate::protocol::{self, PROTOCOL_VERSION};

/// How long a server-initiated close waits for the client's close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection's request rate limiter.
type Limiter =
    RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<std::time::Instant>>;

/// Most queued pushes written before one flush.
const WRITE_BATCH: usize = 64;

/// Runs `future` with a time limit, arming a timer only when it does not finish on its first poll: most
/// socket writes complete at once, and a timer per write is a measurable cost in fan-out. The timer is
/// boxed because a tokio `Sleep` is several hundred bytes, which every idle connection's task would carry.
async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let first = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    let mut deadline = match first {
        Poll::Ready(output) => return Some(output),
        Poll::Pending => Box::pin(tokio::time::sleep(limit)),
    };
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => deadline.as_mut().poll(cx).map(|()| None),
    })
    .await
}

/// A connection's socket and the task's end of its push queue.
pub(super) struct Conn {
    socket: WebSocket,
    rx: mpsc::Receiver<Outbound>,
    write_timeout: Duration,
}

impl Conn {
    pub(super) fn new(
        socket: WebSocket,
        rx: mpsc::Receiver<Outbound>,
        write_timeout: Duration,
    ) -> Conn {
        Conn {
            socket,
            rx,
            write_timeout,
        }
    }

    /// Writes a reply (or greeting) and then whatever pushes are already queued, flushing once: a reply and
    /// the pushes queued by then leave in one socket write.
    async fn write(&mut self, reply: Utf8Bytes) -> Result<(), End> {
        self.write_frames(Some(reply), None).await
    }

    /// Writes one queued push and whatever else is queued, then flushes once.
    async fn write_pushes(&mut self, first: Option<Outbound>) -> Result<(), End> {
        self.write_frames(None, Some(first)).await
    }

    /// The next queued push without waiting: `None` when the queue is empty, `Some(None)` when the hub
    /// dropped our queue's sender.
    fn next_queued(&mut self) -> Option<Option<Outbound>> {
        match self.rx.try_recv() {
            Ok(outbound) => Some(Some(outbound)),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
        }
    }

    async fn write_frames(
        &mut self,
        reply: Option<Utf8Bytes>,
        first_push: Option<Option<Outbound>>,
    ) -> Result<(), End> {
        let limit = self.write_timeout;
        let write = async {
            let mut written = 0;
            if let Some(reply) = reply {
                self.socket
                    .feed(Message::Text(reply))
                    .await
                    .map_err(|error| {
                        tracing::debug!(%error, "socket write failed");
                        End::Gone
                    })?;
                written += 1;
            }
            let mut next = first_push.or_else(|| self.next_queued());
            while let Some(outbound) = next.take() {
                match outbound {
                    // The hub dropped our queue's sender: we were evicted as a slow consumer.
                    None => return Err(End::Close(CLOSE_SLOW_CONSUMER, "slow consumer: resync")),
                    Some(Outbound::Close(code, reason)) => return Err(End::Close(code, reason)),
                    Some(Outbound::Frame(frame)) => {
                        if self.rx.is_closed() && self.rx.is_empty() {
                            return Err(End::Close(CLOSE_SLOW_CONSUMER, "slow consumer: resync"));
                        }
                        self.socket
                            .feed(Message::Text(frame))
                            .await
                            .map_err(|_| End::Gone)?;
                        written += 1;
                    }
                }
                if written < WRITE_BATCH {
                    next = self.next_queued();
                }
            }
            self.socket.flush().await.map_err(|_| End::Gone)
        };
        // Boxed: inline, this state would sit in every idle connection's task; one allocation per write
        // costs far less than the write's system call.
        Box::pin(within(limit, write)).await.unwrap_or_else(|| {
            tracing::debug!("socket write timed out");
            Err(End::Gone)
        })
    }
}

/// Runs one connection from registration to close. `conn` is used in place, never moved into a local: an async
/// fn keeps its arguments in its state, and a moved copy would take the same room again in every task.
pub(super) async fn run(
    app: Arc<App>,
    mut conn: Conn,
    outbox: Outbox,
    session: Session,
    _permit: OwnedSemaphorePermit,
) {
    let (user, registered) = match app.chat.connect(&session, outbox).await {
        Ok(connected) => connected,
        Err(error) => {
            let (code, reason) = match error {
                Error::Unauthorized => (CLOSE_SESSION_ENDED, "user not found"),
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
    let hello = hello(&app.config, user, caller);
    app.metrics.connections.inc();
    app.metrics.connections_opened.inc();
    let end = serve(&app, &mut conn, caller, session.token_hash, hello).await;
    app.chat.disconnect(caller);
    app.metrics.connections.dec();
    if let End::Close(code, reason) = end {
        app.metrics
            .closes
            .get_or_create(&CloseLabels { code })
            .inc();
        Box::pin(close_gracefully(&mut conn.socket, code, reason)).await;
    }
    tracing::debug!(
        user = caller.user_id,
        conn = caller.conn_id,
        "connection closed"
    );
}

/// Sends a close frame and waits briefly for the peer's answer. Dropping the socket at once could make the
/// kernel reset the connection and throw away the close frame before the client has read it.
async fn close_gracefully(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let handshake = async {
        socket.send(close_message(code, reason)).await.ok()?;
        while let Some(Ok(message)) = socket.recv().await {
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
        code,
        reason: reason.into(),
    }))
}

/// The greeting, the first frame of every connection.
fn hello(config: &Config, user: User, caller: Caller) -> Utf8Bytes {
    protocol::event(
        "hello",
        &json!({
            "protocol": PROTOCOL_VERSION,
            "user": user,
            "connection_id": caller.conn_id,
            "heartbeat_ms": config.heartbeat_ms,
            "idle_timeout_ms": config.idle_timeout_ms,
            "limits": {
                "max_frame_bytes": config.max_frame_bytes,
                "max_text_chars": config.max_text_chars,
                "max_custom_bytes": config.max_custom_bytes,
                "history_page_max": config.history_page_max,
                "rate_per_sec": config.rate_per_sec,
                "rate_burst": config.rate_burst,
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
    token_hash: [u8; 32],
    hello: Utf8Bytes,
) -> End {
    let config = &app.config;
    if let Err(end) = conn.write(hello).await {
        return end;
    }
    let quota = Quota::per_second(NonZeroU32::new(config.rate_per_sec).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(config.rate_burst).unwrap_or(NonZeroU32::MIN));
    // std's monotonic clock: governor's default (quanta) calibrates a clock per limiter, which costs
    // CPUID traps on every connect in a VM.
    let limiter = RateLimiter::direct_with_clock(quota, MonotonicClock);
    let mut refused_in_a_row = 0u32;
    let mut last_heard = Instant::now();
    let mut session_checked = Instant::now();
    let mut heartbeat = tokio::time::interval(config.heartbeat() / 2);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Made once: a fresh `cancelled()` future per loop turn would lock the token's waiter list twice per push.
    let shutdown = app.shutdown.cancelled();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => return End::Close(CLOSE_GOING_AWAY, "server restarting: reconnect"),
            outbound = conn.rx.recv() => {
                if let Err(end) = conn.write_pushes(outbound).await {
                    return end;
                }
            }
            incoming = conn.socket.recv() => {
                last_heard = Instant::now();
                let text = match incoming {
                    None => return End::Gone,
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite has queued the echo of the client's close frame: send it.
                        let _ = within(conn.write_timeout, conn.socket.flush()).await;
                        return End::Gone;
                    }
                    Some(Err(error)) => return End::from_read_error(error),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(bytes))) => match Utf8Bytes::try_from(bytes) {
                        Ok(text) => text,
                        Err(_) => {
                            let error = Error::BadRequest("binary frame is not UTF-8 JSON".into());
                            if let Err(end) = conn.write(protocol::error_reply(None, &error)).await {
                                return end;
                            }
                            continue;
                        }
                    },
                };
                // Boxed: a request's state (~1 KB) lives only while it is answered, not in every idle task.
                if let Err(end) = Box::pin(answer(app, conn, caller, &limiter, &mut refused_in_a_row, &text)).await {
                    return end;
                }
            }
            _ = heartbeat.tick() => {
                let silent = last_heard.elapsed();
                if silent >= config.idle_timeout() {
                    return End::Close(CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout");
                }
                if session_checked.elapsed() >= session_check_interval(config) {
                    session_checked = Instant::now();
                    match app.auth.check_session(token_hash).await {
                        Ok(_) => {}
                        Err(Error::Unauthorized) => {
                            return End::Close(CLOSE_SESSION_ENDED, "session expired: log in again")
                        }
                        // The store is unreachable: keep the connection, check again next time.
                        Err(error) => tracing::debug!(%error, "cannot check the session"),
                    }
                }
                if silent >= config.heartbeat() {
                    let ping = within(conn.write_timeout, conn.socket.send(Message::Ping(Default::default())));
                    if !matches!(ping.await, Some(Ok(()))) {
                        return End::Gone;
                    }
                }
            }
        }
    }
}

/// Decodes, rate-limits and runs one request, writing pushes while it waits, then writes its reply.
async fn answer(
    app: &App,
    conn: &mut Conn,
    caller: Caller,
    limiter: &Limiter,
    refused_in_a_row: &mut u32,
    text: &str,
) -> Result<(), End> {
    let started = Instant::now();
    if let Err(not_until) = limiter.check() {
        *refused_in_a_row += 1;
        if *refused_in_a_row > app.config.rate_burst {
            return Err(End::Close(CLOSE_FLOODING, "flooding"));
        }
        let wait = not_until.wait_time_from(MonotonicClock.now());
        let id = protocol::decode(text).ok().map(|r| r.id);
        let error = Error::RateLimited {
            retry_after_ms: wait.as_millis().max(1) as u64,
        };
        app.metrics.record_request("-", error.code(), 0.0);
        return conn.write(protocol::error_reply(id.as_ref(), &error)).await;
    }
    *refused_in_a_row = 0;
    let request = match protocol::decode(text) {
        Ok(request) => request,
        Err((id, error)) => {
            app.metrics.record_request("-", error.code(), 0.0);
            return conn.write(protocol::error_reply(id.as_ref(), &error)).await;
        }
    };
    let op_name = request.op.name();
    let handling = app.chat.handle(caller, request.op);
    tokio::pin!(handling);
    let result = loop {
        tokio::select! {
            result = &mut handling => break result,
            outbound = conn.rx.recv() => conn.write_pushes(outbound).await?,
        }
    };
    let reply = match &result {
        Ok(value) => protocol::ok_reply(&request.id, value),
        Err(error) => {
            if let Error::Internal(detail) = error {
                tracing::error!(%detail, op = op_name, "internal error");
            }
            protocol::error_reply(Some(&request.id), error)
        }
    };
    let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "ok");
    app.metrics
        .record_request(op_name, outcome, started.elapsed().as_secs_f64());
    conn.write(reply).await
}

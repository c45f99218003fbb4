//! The tunnel: the authenticated WebSocket upgrade, and the task that then owns the connection.
//!
//! Every refusal (no or bad token, server full, too many connections of one user, shutting down) happens in
//! [`upgrade`], as an HTTP error, before the upgrade. After it, one task per connection (`connection.rs`) is the
//! only writer of its socket: it writes its replies and the pushes the hub queued for it ([`crate::hub::outbox`]).

mod connection;

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;

use crate::app::App;
use crate::auth::{bearer, Session};
use crate::error::Error;
use crate::hub::outbox;

pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_INTERNAL: u16 = 1011;
pub const CLOSE_SESSION_ENDED: u16 = 4001;
pub const CLOSE_FLOODING: u16 = 4008;
pub const CLOSE_SLOW_CONSUMER: u16 = 4009;
pub const CLOSE_HEARTBEAT_TIMEOUT: u16 = 4010;

/// Bytes read from a socket per read call.
const READ_BUFFER: usize = 1024;

/// Bytes of frames gathered before a socket write (a flush writes whatever is gathered).
const WRITE_BUFFER: usize = 8 * 1024;

/// Most bytes a connection may have written but not yet accepted by the socket.
const MAX_WRITE_BUFFER: usize = 4 * 1024 * 1024;

/// The upgrade's query: a connect ticket (`POST /v1/ws/ticket`), or the token itself (older browser clients).
#[derive(Deserialize)]
pub struct WsQuery {
    ticket: Option<String>,
    token: Option<String>,
}

/// `GET /v1/ws`: every refusal happens here, as an HTTP error, before the upgrade.
pub async fn upgrade(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    match admit(&app, &headers, &query).await {
        Ok((session, permit)) => {
            let frame_limit = app.config.max_frame_bytes;
            let tracker = app.tracker.clone();
            // Every socket's read buffer is zero-filled on its first read, so it is paid by every idle
            // connection: 1 KiB holds a typical request whole; a larger frame is read in 1 KiB steps.
            ws.read_buffer_size(READ_BUFFER)
                // Pushes queued together go out in one write; the buffer grows only while writing.
                .write_buffer_size(WRITE_BUFFER)
                // Replies are bounded (history pages by bytes), so this cap is never reached by a
                // well-behaved peer; it bounds memory when a peer stops reading.
                .max_write_buffer_size(MAX_WRITE_BUFFER.max(frame_limit * 4))
                .max_message_size(frame_limit)
                .max_frame_size(frame_limit)
                .on_upgrade(move |socket| {
                    let (outbox, queue) = outbox(app.config.outbound_queue);
                    let conn = connection::Conn::new(socket, queue, app.config.write_timeout());
                    tracker.track_future(connection::run(app, conn, outbox, session, permit))
                })
        }
        Err(error) => {
            app.metrics.upgrades_refused.inc();
            error.into_response()
        }
    }
}

async fn admit(
    app: &App,
    headers: &HeaderMap,
    query: &WsQuery,
) -> Result<(Session, OwnedSemaphorePermit), Error> {
    if app.shutdown.is_cancelled() {
        return Err(Error::Unavailable("server is shutting down".into()));
    }
    let session = match &query.ticket {
        Some(ticket) => app.auth.redeem_ticket(ticket).await?,
        None => {
            let token = bearer(headers, query.token.as_deref()).ok_or(Error::Unauthorized)?;
            app.auth.authenticate(&token).await?
        }
    };
    let permit = app
        .connection_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| Error::ServerFull)?;
    if app.hub.connections_of(session.user_id) >= app.config.max_connections_per_user {
        return Err(Error::TooManyConnections(
            "too many connections for this user",
        ));
    }
    Ok((session, permit))
}

/// What ended a connection's loop.
enum End {
    /// Close with this code (the socket may already be gone).
    Close(u16, &'static str),
    /// The peer closed or vanished.
    Gone,
}

impl End {
    /// The close a failed read calls for: a frame over the limit, bad UTF-8 or a protocol error is answered
    /// with its close code; anything else means the peer is gone.
    fn from_read_error(error: axum::Error) -> End {
        use tungstenite::error::{CapacityError, Error as WsError};
        tracing::debug!(%error, "socket read failed");
        match error.into_inner().downcast::<WsError>() {
            Ok(ws) => match *ws {
                WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
                    End::Close(CLOSE_TOO_BIG, "frame too large")
                }
                WsError::Capacity(_) => End::Close(CLOSE_TOO_BIG, "frame too large"),
                WsError::Utf8(_) => {
                    End::Close(CLOSE_INVALID_PAYLOAD, "text frame is not valid UTF-8")
                }
                WsError::Protocol(_) => End::Close(CLOSE_PROTOCOL_ERROR, "protocol error"),
                _ => End::Gone,
            },
            Err(_) => End::Gone,
        }
    }
}

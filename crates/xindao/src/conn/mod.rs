//! The tunnel: the authenticated WebSocket upgrade, and the task that then owns the connection.
//!
//! Every refusal (a web page of another origin, no or bad token, server full, too many connections of one user
//! or one address, shutting down) happens in [`upgrade`], as an HTTP error, before the upgrade (whose handshake
//! is `upgrade.rs`). After it, one future per connection (`connection.rs`) writes its replies and the pushes
//! the hub queued for it ([`crate::hub::outbox`](mod@crate::hub::outbox)). The node's connections are run by
//! one task per runtime worker ([`crate::shards`]), so that a delivery wakes one task per shard, not one per
//! recipient; while a connection is parked with nothing unsent, its shard writes its pushes itself
//! ([`crate::hub::direct`](mod@crate::hub::direct)), over the socket both share (`stream.rs`).

mod connection;
mod credentials;
mod limits;

mod socket;
mod stream;
mod upgrade;
mod wait;

use std::sync::Arc;

use axum::extract::{Extension, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;

use crate::app::App;
use crate::auth::{bearer, Session};
use crate::error::Error;
use crate::hub::outbox::{outbox, ConnInfo, USER_AGENT_MAX};
use crate::obs::request_id::RequestId;
use crate::peer::{client_ip, Peer, PerIpGuard};

pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_INTERNAL: u16 = 1011;
pub const CLOSE_SESSION_ENDED: u16 = 4001;
/// The user was banned through the server API.
pub const CLOSE_BANNED: u16 = 4003;
/// The server API disconnected the connection.
pub const CLOSE_DISCONNECTED: u16 = 4004;
pub const CLOSE_FLOODING: u16 = 4008;
pub const CLOSE_SLOW_CONSUMER: u16 = 4009;
pub const CLOSE_HEARTBEAT_TIMEOUT: u16 = 4010;

/// Bytes read from a socket per read call.
const READ_BUFFER: usize = 1024;

/// Bytes of frames gathered before a socket write (a flush writes whatever is gathered).
const WRITE_BUFFER: usize = 8 * 1024;

/// Least room in tungstenite's write buffer: it must hold a whole reply. What a connection may leave unsent
/// is bounded by its byte budget (`max_outstanding_bytes`), checked before the buffer.
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
    peer: Option<Extension<Peer>>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    ws: upgrade::Upgrade,
) -> Response {
    let started = std::time::Instant::now();
    let upgrade_id = request_id.map_or_else(|| Arc::from("-"), |Extension(id)| id.0);
    let peer = peer.map(|Extension(peer)| peer);
    match admit(&app, peer, &headers, &query).await {
        Ok((session, permit, per_ip)) => {
            let hops = crate::obs::hops::hops();
            crate::obs::hops::observe(&hops.upgrade, started.elapsed());
            // The upgrade request's span (its request id) is the parent of every line of the connection.
            let span = tracing::Span::current();
            let info = conn_info(&app, peer, &headers);
            let frame_limit = app.config.max_frame_bytes;
            let tracker = app.tracker.clone();
            // Every socket's read buffer is zero-filled on its first read, so it is paid by every idle
            // connection: 1 KiB holds a typical request whole; a larger frame is read in 1 KiB steps.
            let config = tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER)
                // Pushes queued together go out in one write; the buffer grows only while writing.
                .write_buffer_size(WRITE_BUFFER)
                // Replies are bounded (history pages by bytes) and what stays unsent by the byte budget,
                // so this cap is only a backstop.
                .max_write_buffer_size(
                    MAX_WRITE_BUFFER.max(app.config.max_outstanding_bytes + frame_limit * 4),
                )
                .max_message_size(Some(frame_limit))
                .max_frame_size(Some(frame_limit));
            ws.on_upgrade(config, move |socket, tcp| {
                let config = &app.config;
                let (outbox, queue) = outbox(config.outbound_queue, config.max_outstanding_bytes);
                let outbox = outbox.with_info(info);
                // Run by one of the node's shards (`shards.rs`), which owns the socket from here on.
                let shard = app.shards.pick();
                let queue = queue.with_socket(tcp, shard.direct.clone());
                let conn = socket::Conn::new(socket, queue, config.write_timeout(), upgrade_id);
                let shards = app.clone();
                shards.shards.run_in(
                    shard,
                    tracker.track_future(tracing::Instrument::instrument(
                        async move {
                            connection::run(app, conn, outbox, session, permit).await;
                            drop(per_ip);
                        },
                        span,
                    )),
                );
                std::future::ready(())
            })
        }
        Err(error) => {
            app.metrics.upgrades_refused.inc();
            error.into_response()
        }
    }
}

/// Who is connecting, for the server API's session list: the client's address and its user agent (cut to
/// [`USER_AGENT_MAX`] bytes).
fn conn_info(app: &App, peer: Option<Peer>, headers: &HeaderMap) -> ConnInfo {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|agent| {
            let mut end = agent.len().min(USER_AGENT_MAX);
            while !agent.is_char_boundary(end) {
                end -= 1;
            }
            Box::from(&agent[..end])
        });
    ConnInfo {
        connected_at: crate::model::now_millis(),
        address: peer.map(|Peer(peer)| client_ip(&app.config.trusted_proxies, peer, headers)),
        user_agent,
    }
}

async fn admit(
    app: &App,
    peer: Option<Peer>,
    headers: &HeaderMap,
    query: &WsQuery,
) -> Result<(Session, OwnedSemaphorePermit, Option<PerIpGuard>), Error> {
    if app.shutdown.is_cancelled() {
        return Err(Error::Unavailable("server is shutting down".into()));
    }
    if !origin_allowed(&app.config.allowed_origins, headers) {
        return Err(Error::Forbidden("this origin may not open a WebSocket"));
    }
    let session = match &query.ticket {
        Some(ticket) => app.auth.redeem_ticket(ticket).await?,
        None => {
            let token = bearer(headers, query.token.as_deref()).ok_or(Error::Unauthorized)?;
            let resolved = app.auth.resolve(&token).await?;
            app.chat
                .apply_grants(resolved.session.user_id, &resolved.grants)
                .await;
            resolved.session
        }
    };
    let permit = app
        .connection_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| Error::ServerFull)?;
    let per_ip = match peer {
        Some(Peer(peer)) => {
            let ip = client_ip(&app.config.trusted_proxies, peer, headers);
            let guard = app
                .sockets_per_ip
                .try_acquire(ip)
                .ok_or(Error::TooManyConnections(
                    "too many connections from this address",
                ))?;
            Some(guard)
        }
        None => None,
    };
    if app.hub.connections_of(session.user_id) >= app.config.max_connections_per_user {
        return Err(Error::TooManyConnections(
            "too many connections for this user",
        ));
    }
    Ok((session, permit, per_ip))
}

/// Whether a browser page of the request's `Origin` may open a WebSocket: any request without Origin
/// (mini-programs and native clients send none); else an origin of `allowed` (`*` for any) or, when
/// `allowed` is empty, the origin whose host[:port] is the request's Host (default ports ignored).
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if !allowed.is_empty() {
        return allowed
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin));
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let without_default_port = |authority: &str| -> String {
        let default = match scheme.to_ascii_lowercase().as_str() {
            "https" | "wss" => ":443",
            _ => ":80",
        };
        authority
            .strip_suffix(default)
            .unwrap_or(authority)
            .to_ascii_lowercase()
    };
    without_default_port(authority) == without_default_port(host)
}

/// What ended a connection's loop.
enum End {
    /// Close with this code (the socket may already be gone).
    Close(u16, &'static str),
    /// The peer closed or vanished.
    Gone,
    /// Counted as a close with this code, but dropped without a close handshake: the socket is not taking
    /// bytes, and the close frame would wait behind the ones the client is not reading.
    Abort(u16, &'static str),
}

impl End {
    /// The end a failed socket write calls for: a full write buffer means the client is not reading.
    fn from_write_error(error: tungstenite::Error) -> End {
        match error {
            tungstenite::Error::WriteBufferFull(_) => {
                End::Abort(CLOSE_SLOW_CONSUMER, "slow consumer: write buffer full")
            }
            _ => End::Gone,
        }
    }

    /// The close a failed read calls for: a frame over the limit, bad UTF-8 or a protocol error is answered
    /// with its close code; anything else means the peer is gone.
    fn from_read_error(error: tungstenite::Error) -> End {
        use tungstenite::error::Error as WsError;
        tracing::debug!(%error, "socket read failed");
        match error {
            WsError::Capacity(_) => End::Close(CLOSE_TOO_BIG, "frame too large"),
            WsError::Utf8(_) => End::Close(CLOSE_INVALID_PAYLOAD, "text frame is not valid UTF-8"),
            WsError::Protocol(_) => End::Close(CLOSE_PROTOCOL_ERROR, "protocol error"),
            _ => End::Gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    #[test]
    fn origins_default_to_the_requests_own_host() {
        assert!(origin_allowed(&[], &headers(None, "chat.example.com")));
        assert!(origin_allowed(
            &[],
            &headers(Some("https://chat.example.com"), "chat.example.com:443")
        ));
        assert!(origin_allowed(
            &[],
            &headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080")
        ));
        assert!(!origin_allowed(
            &[],
            &headers(Some("https://evil.example"), "chat.example.com")
        ));
        assert!(!origin_allowed(
            &[],
            &headers(Some("http://127.0.0.1:9999"), "127.0.0.1:8080")
        ));
        assert!(!origin_allowed(
            &[],
            &headers(Some("null"), "chat.example.com")
        ));
        let allowed = vec!["https://app.example.com".to_string()];
        assert!(origin_allowed(
            &allowed,
            &headers(Some("https://APP.example.com"), "api.example.com")
        ));
        assert!(!origin_allowed(
            &allowed,
            &headers(Some("https://api.example.com"), "api.example.com")
        ));
    }
}

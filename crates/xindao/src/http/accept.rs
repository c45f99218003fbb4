//! The accept loop and the HTTP connection: what an anonymous client can hold before it has authenticated.
//!
//! Every TCP connection counts from its accept: against `max_pending_connections` and its address's
//! `max_connections_per_ip` until it upgrades (then the WebSocket counts, see [`crate::conn`]); over either
//! cap it is closed at once, before a byte is read. hyper serves each connection with a timer, so a client
//! must send a request's headers within `http_header_timeout_ms` of the accept or, kept alive, of the previous
//! response (slowloris and idle keep-alive sockets are closed), the head is bounded by `max_header_bytes`
//! (431), and a whole request, body included, by three times that timeout (408). An accept that fails for want of descriptors
//! backs off instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::peer::{is_trusted, Peer, PerIp, PerIpGuard};

/// First and longest pause after a failed accept (EMFILE, ENFILE, ENOBUFS, ENOMEM).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// The caps applied at accept, and how connections are served.
pub(super) struct Edge {
    pub pending: Arc<Semaphore>,
    pub per_ip: PerIp,
    /// Proxies are not counted per address at accept: all their clients share their address.
    pub trusted_proxies: Vec<IpNet>,
    pub http: http1::Builder,
    /// Longest a request may take, its body included (three header timeouts; a WebSocket is past its
    /// upgrade well before): a client that trickles a body is answered 408 and the connection closed.
    pub request_timeout: Duration,
    /// Longest a media upload (`POST /v1/media`) may take: `media_upload_timeout_secs`.
    pub upload_timeout: Duration,
    /// The public listener's figures (pending connections, refusals); None for the admin listener, so that
    /// a scrape does not count itself.
    pub metrics: Option<Metrics>,
}

impl Edge {
    pub fn new(
        max_pending: usize,
        max_per_ip: usize,
        trusted_proxies: Vec<IpNet>,
        header_timeout: Duration,
        max_header_bytes: usize,
        metrics: Option<Metrics>,
    ) -> Edge {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(max_header_bytes)
            .keep_alive(true);
        Edge {
            pending: Arc::new(Semaphore::new(max_pending)),
            per_ip: PerIp::new(max_per_ip),
            trusted_proxies,
            http,
            request_timeout: header_timeout * 3,
            upload_timeout: header_timeout * 3,
            metrics,
        }
    }

    /// A place for a connection from `peer`, or None when it is over a cap.
    fn admit(&self, peer: SocketAddr) -> Option<Admission> {
        let ip = peer.ip().to_canonical();
        let per_ip = match is_trusted(&self.trusted_proxies, ip) {
            true => None,
            false => Some(self.per_ip.try_acquire(ip)?),
        };
        let pending = self.pending.clone().try_acquire_owned().ok()?;
        if let Some(metrics) = &self.metrics {
            metrics.pending_connections.inc();
        }
        Some(Admission {
            _pending: pending,
            _per_ip: per_ip,
            metrics: self.metrics.clone(),
        })
    }
}

/// A connection's places in the caps at accept, given back when it upgrades or ends.
struct Admission {
    _pending: OwnedSemaphorePermit,
    _per_ip: Option<PerIpGuard>,
    metrics: Option<Metrics>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(metrics) = &self.metrics {
            metrics.pending_connections.dec();
        }
    }
}

/// Accepts until `shutdown`; each connection is served in a task of `tracker`.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    edge: Arc<Edge>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            // The peer gave up before the accept: nothing to wait for.
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                backoff = (backoff * 2).clamp(ACCEPT_BACKOFF.0, ACCEPT_BACKOFF.1);
                tracing::warn!(%error, ?backoff, "accept failed (out of file descriptors?); backing off");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let Some(admission) = edge.admit(peer) else {
            if let Some(metrics) = &edge.metrics {
                metrics.accepts_refused.inc();
            }
            tracing::debug!(%peer, "connection refused at accept: over a connection cap");
            continue;
        };
        set_nodelay(&tcp);
        tracker.spawn(connection(
            tcp,
            peer,
            router.clone(),
            edge.clone(),
            admission,
            shutdown.clone(),
        ));
    }
}

/// Serves one HTTP connection until it closes, upgrades, or shutdown lets its current request finish.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    edge: Arc<Edge>,
    admission: Admission,
    shutdown: CancellationToken,
) {
    let (request_timeout, upload_timeout) = (edge.request_timeout, edge.upload_timeout);
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(Peer(peer));
        let request_timeout = if request.uri().path() == "/v1/media" {
            upload_timeout.max(request_timeout)
        } else {
            request_timeout
        };
        let response = tower::Service::call(&mut router.clone(), request);
        async move {
            match tokio::time::timeout(request_timeout, response).await {
                Ok(response) => response,
                Err(_) => {
                    let mut timed_out = StatusCode::REQUEST_TIMEOUT.into_response();
                    timed_out
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    Ok(timed_out)
                }
            }
        }
    });
    let conn = edge
        .http
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = served {
        tracing::debug!(%peer, %error, "HTTP connection ended");
    }
    drop(admission);
}

/// Errors of one connection that the listener reports at accept; the listener itself is fine.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Turns Nagle's algorithm off on an accepted socket. Without TCP_NODELAY, a push written while the previous one
/// is not yet acknowledged waits for the client's delayed ACK (up to 40 ms on Linux); writes are already
/// gathered per connection, so every write is one the client should get now.
fn set_nodelay(tcp: &TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
}

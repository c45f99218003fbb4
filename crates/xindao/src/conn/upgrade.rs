//! The WebSocket handshake of `GET /v1/ws`, done here rather than by axum so that the connection keeps its
//! TCP socket itself: axum's `WebSocket` hides it behind hyper's type-erased `Upgraded`, and direct writes
//! (`stream.rs`) need it shared. The checks and refusals are axum's (RFC 6455 section 4.2.1).

use std::future::Future;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};

use super::stream::SharedStream;

/// A connection's WebSocket, over its shared socket.
pub type Socket = WebSocketStream<SharedStream>;

/// A valid upgrade request, not yet answered.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: hyper::upgrade::OnUpgrade,
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

fn header_lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let refuse = |status: StatusCode, why: &'static str| (status, why).into_response();
        let headers = &parts.headers;
        let checks = [
            (
                parts.method == Method::GET,
                StatusCode::METHOD_NOT_ALLOWED,
                "Request method must be `GET`",
            ),
            (
                header_lists(headers, header::CONNECTION, "upgrade"),
                StatusCode::BAD_REQUEST,
                "Connection header did not include 'upgrade'",
            ),
            (
                header_is(headers, header::UPGRADE, "websocket"),
                StatusCode::BAD_REQUEST,
                "`Upgrade` header did not include 'websocket'",
            ),
            (
                header_is(headers, header::SEC_WEBSOCKET_VERSION, "13"),
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Version` header did not include '13'",
            ),
        ];
        if let Some(&(_, status, why)) = checks.iter().find(|(passed, ..)| !passed) {
            return Err(refuse(status, why));
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Key` header missing",
            ));
        };
        let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return Err(refuse(
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket request couldn't be upgraded since no upgrade state was present",
            ));
        };
        Ok(Upgrade { key, on_upgrade })
    }
}

impl Upgrade {
    /// Answers 101 and, once hyper hands the connection over, runs `callback` with the WebSocket and the
    /// socket under it.
    pub fn on_upgrade<F, Fut>(self, config: WebSocketConfig, callback: F) -> Response
    where
        F: FnOnce(Socket, Arc<TcpStream>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => return tracing::debug!(%error, "websocket upgrade failed"),
            };
            // The server serves every connection as `TokioIo<TcpStream>` (`http::accept`).
            let parts = match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => parts,
                Err(_) => return tracing::error!("an upgraded connection is not a TCP stream"),
            };
            let tcp = Arc::new(parts.io.into_inner());
            let socket = WebSocketStream::from_partially_read(
                SharedStream::new(tcp.clone()),
                parts.read_buf.to_vec(),
                Role::Server,
                Some(config),
            )
            .await;
            callback(socket, tcp).await;
        });
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

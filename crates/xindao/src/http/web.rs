//! The embedded web client (a page, its script and style, and the JavaScript SDK), served from the binary
//! with security headers: a Content-Security-Policy that lets the page load only its own files and talk
//! only to its own origin (HTTP and WebSocket) and never be framed, no MIME sniffing, no referrer.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::App;

/// The page's policy; `connect-src` gets the WebSocket URLs of the request's own host appended (`'self'`
/// covers ws:/wss: only in browsers that implement CSP level 3).
/// `img-src https:`: avatars are https URLs (WeChat's, or any the user sets); only images, never scripts.
const CSP: &str =
    "default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self'; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; \
                   connect-src 'self'";

/// The web client's files.
pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| {
                file(
                    headers,
                    "text/html; charset=utf-8",
                    include_bytes!("../../web/index.html"),
                )
            }),
        )
        .route(
            "/app.js",
            get(|headers: HeaderMap| {
                file(
                    headers,
                    "text/javascript; charset=utf-8",
                    include_bytes!("../../web/app.js"),
                )
            }),
        )
        .route(
            "/xindao.js",
            get(|headers: HeaderMap| {
                file(
                    headers,
                    "text/javascript; charset=utf-8",
                    include_bytes!("../../../../sdk/js/src/xindao.js"),
                )
            }),
        )
        .route(
            "/style.css",
            get(|headers: HeaderMap| {
                file(
                    headers,
                    "text/css; charset=utf-8",
                    include_bytes!("../../web/style.css"),
                )
            }),
        )
        // the page's other modules (strings, shared helpers, the conversation and its composer, rooms, people,
        // media bubbles)
        .route(
            "/i18n.js",
            get(|h: HeaderMap| script(h, include_bytes!("../../web/i18n.js"))),
        )
        .route(
            "/ui.js",
            get(|h: HeaderMap| script(h, include_bytes!("../../web/ui.js"))),
        )
        .route(
            "/chat.js",
            get(|h: HeaderMap| script(h, include_bytes!("../../web/chat.js"))),
        )
        .route(
            "/composer.js",
            get(|h: HeaderMap| script(h, include_bytes!("../../web/composer.js"))),
        )
        .route(
            "/rooms.js",
            get(|h: HeaderMap| script(h, include_bytes!("../../web/rooms.js"))),
        )
        .route(
            "/people.js",
            get(|h: HeaderMap| script(h, include_bytes!("../../web/people.js"))),
        )
        .route(
            "/media.js",
            get(|h: HeaderMap| script(h, include_bytes!("../../web/media.js"))),
        )
}

/// The Content-Security-Policy for a page requested with `headers`: [`CSP`], plus `ws://` and `wss://` of
/// the Host it was asked from when that is a plain host[:port].
fn content_security_policy(headers: &HeaderMap) -> HeaderValue {
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let policy = match host {
        Some(host) => format!("{CSP} ws://{host} wss://{host}"),
        None => CSP.to_string(),
    };
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(CSP))
}

async fn script(headers: HeaderMap, body: &'static [u8]) -> Response {
    file(headers, "text/javascript; charset=utf-8", body).await
}

async fn file(headers: HeaderMap, content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                content_security_policy(&headers),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        body,
    )
        .into_response()
}

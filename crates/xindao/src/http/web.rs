//! The embedded web client (a page, its script and style, and the JavaScript SDK), served from the binary.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::App;

/// The web client's files.
pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/",
            get(|| {
                file(
                    "text/html; charset=utf-8",
                    include_bytes!("../../web/index.html"),
                )
            }),
        )
        .route(
            "/app.js",
            get(|| {
                file(
                    "text/javascript; charset=utf-8",
                    include_bytes!("../../web/app.js"),
                )
            }),
        )
        .route(
            "/xindao.js",
            get(|| {
                file(
                    "text/javascript; charset=utf-8",
                    include_bytes!("../../../../sdk/js/src/xindao.js"),
                )
            }),
        )
        .route(
            "/style.css",
            get(|| {
                file(
                    "text/css; charset=utf-8",
                    include_bytes!("../../web/style.css"),
                )
            }),
        )
}

async fn file(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

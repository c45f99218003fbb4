//! The media routes: upload (`POST /v1/media`, bearer token) and download (`GET /v1/media/{id}`, signed URL).
//! The HTTP side only: what is stored, how it is checked and signed is [`crate::media`].

mod download;
mod upload;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::app::App;

/// Bytes of multipart framing and form fields allowed on top of the file itself.
const FORM_OVERHEAD: u64 = 64 * 1024;

/// The media routes: upload (bearer token) and download (signed URL).
pub fn routes(app: &App) -> Router<Arc<App>> {
    let body_max = app.media.max_any().saturating_add(FORM_OVERHEAD);
    Router::new()
        .route(
            "/v1/media",
            post(upload::upload).layer(DefaultBodyLimit::max(
                usize::try_from(body_max).unwrap_or(usize::MAX),
            )),
        )
        .route("/v1/media/{id}", get(download::download))
}

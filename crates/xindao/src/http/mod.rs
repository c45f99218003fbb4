//! The HTTP side: the [`Server`] that accepts connections, and the routes it serves.
//!
//! Every request starts here. `/v1/ws` upgrades to the WebSocket tunnel ([`crate::conn`]); the rest are plain
//! HTTP handlers: login, logout and connect tickets (`session.rs`), health (`status.rs`) and the embedded web
//! client (`web.rs`, with its security headers). Errors answer in the API's own JSON format ([`crate::error`]).
//! /metrics is served only by the admin listener ([`admin_router`]), never on the public one. Below the routes,
//! `accept.rs` bounds what a client may hold before authenticating, `peer.rs` says who the client is, and
//! `fd_budget.rs` keeps the connection caps inside the open-file limit.

mod accept;
mod admin;
mod error_response;
mod fd_budget;
mod media;
mod request_id;
mod server;
pub mod server_api;
mod session;
mod status;
mod web;

pub use server::Server;

use std::sync::Arc;

use axum::body::Bytes;
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::app::App;
use crate::error::{Error, Result};

/// Largest HTTP request body accepted.
const BODY_LIMIT: usize = 64 * 1024;

/// Every route of the server.
pub fn router(app: Arc<App>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(status::healthz))
        .route("/v1/login/wechat", post(session::login_wechat))
        .route("/v1/login/dev", post(session::login_dev))
        .route("/v1/logout", post(session::logout))
        .route("/v1/me", get(session::me))
        .route("/v1/ws", get(crate::conn::upgrade))
        .route("/v1/ws/ticket", post(session::ws_ticket))
        .merge(server_api::routes(app.clone()))
        .merge(web::routes())
        .merge(crate::wafer::routes(&app.config))
        .merge(media::routes(&app));
    // Only trace export reads the matched route.
    let routes = if crate::obs::otel::exporting() {
        routes.route_layer(axum::middleware::from_fn(request_id::route))
    } else {
        routes
    };
    routes
        .fallback(|| async { Error::NotFound("no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            request_id::layer,
        ))
        .with_state(app)
}

/// Connections the admin listener holds at once (it is for a scraper and an operator, not for clients).
pub const ADMIN_MAX_CONNECTIONS: usize = 32;

/// The admin listener's routes: /metrics for Prometheus, and /healthz.
pub fn admin_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(status::metrics))
        .route("/healthz", get(status::healthz))
        .merge(admin::routes())
        .fallback(|| async { Error::NotFound("no such route") })
        .with_state(app)
}

/// Parses a JSON body into `T`, answering in the API's own error format instead of axum's plain text:
/// `bad_request` when the body is not a JSON object, `invalid_args` when the object's fields do not fit `T`.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T> {
    let object: &RawValue = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str(text).ok())
        .filter(|raw: &&RawValue| raw.get().starts_with('{'))
        .ok_or_else(|| Error::BadRequest("the body must be a JSON object".into()))?;
    serde_json::from_str(object.get()).map_err(|e| Error::InvalidArgs(format!("invalid body: {e}")))
}

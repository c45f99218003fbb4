//! The HTTP API: health, login/logout, the current user, metrics, and the embedded web client.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::auth::Session;
use crate::error::{Error, Result};
use crate::server::App;
use crate::transport;

/// Largest HTTP request body accepted.
const BODY_LIMIT: usize = 64 * 1024;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/login/wechat", post(login_wechat))
        .route("/v1/login/dev", post(login_dev))
        .route("/v1/logout", post(logout))
        .route("/v1/me", get(me))
        .route("/v1/ws", get(transport::upgrade))
        .route(
            "/",
            get(|| {
                web(
                    "text/html; charset=utf-8",
                    include_bytes!("../web/index.html"),
                )
            }),
        )
        .route(
            "/app.js",
            get(|| {
                web(
                    "text/javascript; charset=utf-8",
                    include_bytes!("../web/app.js"),
                )
            }),
        )
        .route(
            "/xindao.js",
            get(|| {
                web(
                    "text/javascript; charset=utf-8",
                    include_bytes!("../../../sdk/js/src/xindao.js"),
                )
            }),
        )
        .route(
            "/style.css",
            get(|| {
                web(
                    "text/css; charset=utf-8",
                    include_bytes!("../web/style.css"),
                )
            }),
        )
        .fallback(|| async { Error::NotFound("no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

async fn web(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
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

async fn session(app: &App, headers: &HeaderMap) -> Result<Session> {
    let token = transport::bearer(headers, None).ok_or(Error::Unauthorized)?;
    app.auth.authenticate(&token).await
}

/// 503 only when this node cannot serve (shutting down, or the store does not answer). A cluster bus that is
/// down is reported but keeps the node in: its own users still chat, and taking every node out of the load
/// balancer because their shared bus restarts would turn a degraded cluster into an outage.
async fn healthz(State(app): State<Arc<App>>) -> Response {
    let bus = if app.bus.connected() {
        "ok"
    } else {
        "disconnected"
    };
    if !app.shutdown.is_cancelled() && app.store.healthy().await {
        Json(json!({ "status": "ok", "store": "ok", "bus": bus })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "bus": bus })),
        )
            .into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.metrics
        .bus_connected
        .set(i64::from(app.bus.connected()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct WeChatLogin {
    code: String,
}

async fn login_wechat(State(app): State<Arc<App>>, bytes: Bytes) -> Result<Response> {
    let request: WeChatLogin = body(&bytes)?;
    Ok(Json(app.auth.login_wechat(&request.code).await?).into_response())
}

#[derive(Deserialize)]
struct DevLogin {
    display_name: String,
}

async fn login_dev(State(app): State<Arc<App>>, bytes: Bytes) -> Result<Response> {
    let request: DevLogin = body(&bytes)?;
    Ok(Json(app.auth.login_dev(&request.display_name).await?).into_response())
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response> {
    let session = session(&app, &headers).await?;
    app.auth.logout(&session).await?;
    app.chat.end_session(session.token_hash);
    Ok(Json(json!({})).into_response())
}

async fn me(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response> {
    let session = session(&app, &headers).await?;
    let user = app
        .store
        .user(session.user_id)
        .await?
        .ok_or(Error::Unauthorized)?;
    Ok(Json(json!({ "user": user })).into_response())
}

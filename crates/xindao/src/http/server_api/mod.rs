//! The server API: HTTP+JSON under `/v1/server/...` for a business backend (docs/server-api.md). One file per
//! resource (`messages`, `users`, `rooms`, `sessions`, `webhooks`); this one authenticates every call with an API key
//! (`Authorization: Bearer xdk_...`, `keys.rs`), rate-limits it per key, logs it with the key's name (never
//! the key), and reads bodies, paths and queries into the API's own error format.
//!
//! The handlers call the chat service ([`crate::chat::Chat`]) for everything a client could also do, so a
//! server-API send or membership change takes the same path, with the same pushes, as a client's.

pub mod keys;
mod messages;
mod rooms;
mod sessions;
mod users;
mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::app::App;
use crate::auth::bearer;
pub use crate::auth::server_api::ServerApi;
use crate::error::{Error, Result};
use crate::model::User;

use keys::{Scope, Scopes};

/// The key a call was authenticated with: a request extension for the handlers.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    pub name: Arc<str>,
    scopes: Scopes,
}

impl Caller {
    /// `insufficient_scope` unless the key has `scope`.
    fn require(&self, scope: Scope) -> Result<()> {
        match self.scopes.has(scope) {
            true => Ok(()),
            false => Err(Error::InsufficientScope(scope.name())),
        }
    }

    /// For a read-only route: `scope` or `read`.
    fn require_read(&self, scope: Scope) -> Result<()> {
        match self.scopes.has(Scope::Read) {
            true => Ok(()),
            false => self.require(scope),
        }
    }
}

/// The routes, under `/v1/server`; every one goes through `authenticate`.
pub fn routes(app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/v1/server/messages", post(messages::send))
        .route(
            "/v1/server/conversations/{id}/messages",
            get(messages::history),
        )
        .route(
            "/v1/server/conversations/{id}/messages/{seq}",
            delete(messages::remove),
        )
        .route("/v1/server/events", post(messages::event))
        .route(
            "/v1/server/users",
            post(users::create).get(users::by_external_id),
        )
        .route(
            "/v1/server/users/{id}",
            get(users::get).patch(users::update),
        )
        .route("/v1/server/users/{id}/ban", post(users::ban))
        .route("/v1/server/users/{id}/unban", post(users::unban))
        .route("/v1/server/users/{id}/mute", post(users::mute))
        .route("/v1/server/users/{id}/unmute", post(users::unmute))
        .route(
            "/v1/server/users/{id}/conversations",
            get(rooms::user_conversations),
        )
        .route(
            "/v1/server/users/{id}/sessions",
            get(sessions::list).delete(sessions::disconnect_all),
        )
        .route(
            "/v1/server/users/{id}/sessions/{conn}",
            delete(sessions::disconnect_one),
        )
        .route("/v1/server/rooms", post(rooms::create))
        .route(
            "/v1/server/rooms/{id}",
            axum::routing::patch(rooms::rename).delete(rooms::archive),
        )
        .route(
            "/v1/server/rooms/{id}/members",
            get(rooms::members).post(rooms::add),
        )
        .route(
            "/v1/server/rooms/{id}/members/{user}",
            delete(rooms::remove),
        )
        .route("/v1/server/webhooks/dead", get(webhooks::dead))
        .route("/v1/server/webhooks/dead/redrive", post(webhooks::redrive))
        .route_layer(axum::middleware::from_fn_with_state(app, authenticate))
        .method_not_allowed_fallback(method_not_allowed)
}

/// A known path with a method it does not take: `405 method_not_allowed`, in the API's JSON.
async fn method_not_allowed() -> Response {
    let body = serde_json::json!({ "error": {
        "code": "method_not_allowed",
        "message": "this route does not take this method",
    }});
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

/// Authenticates the key (`401` for a missing, unknown or revoked one), takes a token of its rate limit
/// (`429`), runs the route with the key as an extension, and logs the call with the key's name.
async fn authenticate(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let refuse = |key: &str, error: Error| {
        tracing::info!(target: "xindao::server_api", key, %method, %path,
            status = error.status().as_u16(), "server API call refused");
        error.into_response()
    };
    let presented = bearer(request.headers(), None).unwrap_or_default();
    let key = match keys::lookup(app.store.as_ref(), &presented).await {
        Ok(Some(key)) => key,
        Ok(None) => return refuse("-", Error::Unauthorized),
        Err(error) => return refuse("-", error),
    };
    if let Err(error) = app.server_api.check_rate(key.id) {
        return refuse(&key.name, error);
    }
    let name: Arc<str> = Arc::from(key.name.as_str());
    request.extensions_mut().insert(Caller {
        name: name.clone(),
        scopes: Scopes::from_stored(&key.scopes),
    });
    let response = next.run(request).await;
    tracing::info!(target: "xindao::server_api", key = %name, %method, %path,
        status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64,
        "server API call");
    response
}

/// A JSON reply, as the chat service encoded it.
fn reply(raw: Box<RawValue>) -> Response {
    axum::Json(raw).into_response()
}

/// Reads a JSON object body into `T`: `413 body_too_large` over the body limit, `400 invalid_json` when it
/// is not a JSON object, `400 invalid_args` when its fields do not fit `T`.
fn body<T: DeserializeOwned>(bytes: std::result::Result<Bytes, BytesRejection>) -> Result<T> {
    let bytes = bytes.map_err(|rejection| match rejection.status().as_u16() {
        413 => Error::BodyTooLarge(super::BODY_LIMIT),
        _ => Error::InvalidJson(format!("unreadable body: {rejection}")),
    })?;
    let object: &RawValue = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| serde_json::from_str(text).ok())
        .filter(|raw: &&RawValue| raw.get().starts_with('{'))
        .ok_or_else(|| Error::InvalidJson("the body must be a JSON object".into()))?;
    serde_json::from_str(object.get()).map_err(|e| Error::InvalidArgs(format!("invalid body: {e}")))
}

/// Reads a query string into `T` (`400 invalid_args` when it does not fit).
fn query<T: DeserializeOwned>(uri: &axum::http::Uri) -> Result<T> {
    axum::extract::Query::try_from_uri(uri)
        .map(|axum::extract::Query(value)| value)
        .map_err(|e| Error::InvalidArgs(format!("invalid query: {e}")))
}

/// An id from the path: a positive integer, else `400 invalid_args`.
fn id(text: &str, what: &str) -> Result<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Error::InvalidArgs(format!("`{text}` is not a {what} id")))
}

/// The system account, created on first use.
async fn system_user(app: &App) -> Result<User> {
    app.server_api
        .system
        .get_or_try_init(|| app.store.system_user(&app.config.system_display_name))
        .await
        .cloned()
}

/// A user that must exist (`404 not_found` otherwise).
async fn existing_user(app: &App, user: i64) -> Result<crate::store::server_api::UserRecord> {
    crate::chat::found(app.store.user_record(user).await?, "no such user")
}

/// A conversation that must exist (`404 not_found` otherwise).
async fn existing_conversation(app: &App, conversation: i64) -> Result<()> {
    match app.store.conversation_exists(conversation).await? {
        true => Ok(()),
        false => Err(Error::NotFound("no such conversation")),
    }
}

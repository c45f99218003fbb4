//! Login (WeChat `code2Session`, or the development login), logout, the current user, and connect tickets.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::body;
use crate::app::App;
use crate::auth::{bearer, Session};
use crate::error::{Error, Result};
use crate::peer::Peer;

/// The caller's session, from the `Authorization: Bearer` header.
async fn session(app: &App, headers: &HeaderMap) -> Result<Session> {
    let token = bearer(headers, None).ok_or(Error::Unauthorized)?;
    let resolved = app.auth.resolve(&token).await?;
    app.chat
        .apply_grants(resolved.session.user_id, &resolved.grants)
        .await;
    Ok(resolved.session)
}

/// The address a login is counted against: the TCP peer, or the client a trusted proxy forwarded
/// (`trusted_proxies`; behind an untrusted proxy every client shares the proxy's address).
fn client_ip(app: &App, Peer(peer): Peer, headers: &HeaderMap) -> IpAddr {
    crate::peer::client_ip(&app.config.trusted_proxies, peer, headers)
}

#[derive(Deserialize)]
struct WeChatLogin {
    code: String,
}

pub(super) async fn login_wechat(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response> {
    let request: WeChatLogin = body(&bytes)?;
    let login = app
        .auth
        .login_wechat(client_ip(&app, peer, &headers), &request.code);
    Ok(Json(login.await?).into_response())
}

#[derive(Deserialize)]
struct DevLogin {
    display_name: String,
}

pub(super) async fn login_dev(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response> {
    let request: DevLogin = body(&bytes)?;
    let login = app
        .auth
        .login_dev(client_ip(&app, peer, &headers), &request.display_name);
    Ok(Json(login.await?).into_response())
}

/// `POST /v1/ws/ticket`: a single-use connect ticket for the caller's session, for `GET /v1/ws?ticket=`.
pub(super) async fn ws_ticket(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response> {
    let session = session(&app, &headers).await?;
    Ok(Json(app.auth.issue_ticket(&session).await?).into_response())
}

/// Revokes the session and closes every WebSocket opened with it.
pub(super) async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response> {
    let session = session(&app, &headers).await?;
    app.auth.logout(&session).await?;
    app.chat.end_session(session.token_hash);
    Ok(Json(json!({})).into_response())
}

pub(super) async fn me(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response> {
    let session = session(&app, &headers).await?;
    let user = app
        .store
        .user(session.user_id)
        .await?
        .ok_or(Error::Unauthorized)?;
    Ok(Json(json!({ "user": user })).into_response())
}

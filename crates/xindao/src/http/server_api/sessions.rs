//! A user's connections on this node: list them (connection id, since when, client address and user agent)
//! and disconnect them, all or one, with close code 4004.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::keys::Scope;
use super::{existing_user, id, Caller};
use crate::app::App;
use crate::conn::CLOSE_DISCONNECTED;
use crate::error::{Error, Result};

/// `GET /v1/server/users/{id}/sessions` (scope `sessions` or `read`).
pub(super) async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> Result<Response> {
    caller.require_read(Scope::Sessions)?;
    let user = id(&user, "user")?;
    existing_user(&app, user).await?;
    let sessions: Vec<_> = app
        .hub
        .connections_info(user)
        .into_iter()
        .map(|(connection_id, info)| {
            json!({
                "connection_id": connection_id,
                "connected_at": info.connected_at,
                "address": info.address.map(|a| a.to_string()),
                "user_agent": info.user_agent,
            })
        })
        .collect();
    let node = app.config.node_id.clone();
    Ok(Json(json!({ "sessions": sessions, "node": node })).into_response())
}

/// `DELETE /v1/server/users/{id}/sessions` (scope `sessions`): closes every connection of the user on this
/// node.
pub(super) async fn disconnect_all(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> Result<Response> {
    caller.require(Scope::Sessions)?;
    let user = id(&user, "user")?;
    existing_user(&app, user).await?;
    let closed = app.hub.close_user(user, None, CLOSE_DISCONNECTED);
    Ok(Json(json!({ "closed": closed })).into_response())
}

/// `DELETE /v1/server/users/{id}/sessions/{connection_id}` (scope `sessions`).
pub(super) async fn disconnect_one(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path((user, conn)): Path<(String, String)>,
) -> Result<Response> {
    caller.require(Scope::Sessions)?;
    let (user, conn) = (id(&user, "user")?, id(&conn, "connection")?);
    existing_user(&app, user).await?;
    match app
        .hub
        .close_user(user, Some(conn as u64), CLOSE_DISCONNECTED)
    {
        0 => Err(Error::NotFound(
            "no such connection of this user on this node",
        )),
        closed => Ok(Json(json!({ "closed": closed })).into_response()),
    }
}

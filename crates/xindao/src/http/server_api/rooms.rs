//! Rooms a business backend manages: create (owner and members), rename, add and remove members (with the
//! `member`/`members_changed` pushes of the client operations), archive, list members, and list a user's
//! conversations. Membership changes are authorised as the room's owner, so the room rules still hold.

use std::num::NonZeroUsize;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::keys::Scope;
use super::{body, existing_user, id, query, reply, Caller};
use crate::app::App;
use crate::error::{Error, Result};
use crate::model::{ConversationId, UserId, Visibility};
use crate::protocol::op::ConversationsArgs;
use crate::store::server_api::RoomState;

/// Members a room may be created with in one call.
const CREATE_MEMBERS_MAX: usize = 100;

/// A live room (`404 not_found` for an unknown or archived one).
async fn live_room(app: &App, room: ConversationId) -> Result<RoomState> {
    match app.store.room_state(room).await? {
        Some(state) if !state.archived => Ok(state),
        _ => Err(Error::NotFound("no such room")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    name: String,
    owner_id: UserId,
    #[serde(default)]
    visibility: Visibility,
    #[serde(default)]
    members: Vec<UserId>,
}

/// `POST /v1/server/rooms` (scope `rooms`).
pub(super) async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    bytes: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    caller.require(Scope::Rooms)?;
    let b: CreateBody = body(bytes)?;
    if b.members.len() > CREATE_MEMBERS_MAX {
        return Err(Error::InvalidArgs(format!(
            "at most {CREATE_MEMBERS_MAX} members at creation: add more with POST .../members"
        )));
    }
    existing_user(&app, b.owner_id).await?;
    for &member in &b.members {
        existing_user(&app, member).await?;
    }
    let created = app
        .chat
        .server_room_create(b.owner_id, &b.name, b.visibility, &b.members)
        .await?;
    Ok(reply(created))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RenameBody {
    name: String,
}

/// `PATCH /v1/server/rooms/{id}` (scope `rooms`): members get `room_updated`.
pub(super) async fn rename(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
    bytes: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    caller.require(Scope::Rooms)?;
    let room = id(&room, "room")?;
    let b: RenameBody = body(bytes)?;
    app.chat.server_room_rename(room, &b.name).await?;
    Ok(Json(json!({})).into_response())
}

/// `DELETE /v1/server/rooms/{id}` (scope `rooms`): archives the room (members get `room_archived`).
pub(super) async fn archive(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
) -> Result<Response> {
    caller.require(Scope::Rooms)?;
    let room = id(&room, "room")?;
    let removed = app.chat.server_room_archive(room).await?;
    Ok(Json(json!({ "removed": removed })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddBody {
    user_id: UserId,
}

/// `POST /v1/server/rooms/{id}/members` (scope `rooms`).
pub(super) async fn add(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
    bytes: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    caller.require(Scope::Rooms)?;
    let room = id(&room, "room")?;
    let b: AddBody = body(bytes)?;
    let state = live_room(&app, room).await?;
    existing_user(&app, b.user_id).await?;
    let owner = state.owner_id.ok_or(Error::Conflict(
        "the room has no owner: nobody can be added",
    ))?;
    let added = app.chat.server_room_add(room, b.user_id, owner).await?;
    Ok(Json(json!({ "added": added })).into_response())
}

/// `DELETE /v1/server/rooms/{id}/members/{user}` (scope `rooms`).
pub(super) async fn remove(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path((room, user)): Path<(String, String)>,
) -> Result<Response> {
    caller.require(Scope::Rooms)?;
    let (room, user) = (id(&room, "room")?, id(&user, "user")?);
    let state = live_room(&app, room).await?;
    existing_user(&app, user).await?;
    let removed = app
        .chat
        .server_room_remove(room, user, state.owner_id)
        .await?;
    Ok(Json(json!({ "removed": removed })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    limit: Option<NonZeroUsize>,
    cursor: Option<String>,
}

/// `GET /v1/server/rooms/{id}/members?limit=&cursor=` (scope `rooms` or `read`).
pub(super) async fn members(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
    uri: Uri,
) -> Result<Response> {
    caller.require_read(Scope::Rooms)?;
    let room = id(&room, "room")?;
    let q: PageQuery = query(&uri)?;
    live_room(&app, room).await?;
    let page = app
        .chat
        .server_members(room, q.limit, q.cursor.as_deref())
        .await?;
    Ok(reply(page))
}

/// `GET /v1/server/users/{id}/conversations?limit=&cursor=` (scope `rooms` or `read`): as the user's own
/// `conversations` operation answers it.
pub(super) async fn user_conversations(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    uri: Uri,
) -> Result<Response> {
    caller.require_read(Scope::Rooms)?;
    let user = id(&user, "user")?;
    let q: PageQuery = query(&uri)?;
    existing_user(&app, user).await?;
    let args = ConversationsArgs {
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(reply(app.chat.server_conversations(user, args).await?))
}

//! Users a business backend manages: create, change (display name, its own `external_id`, `custom` JSON),
//! look up by id or external id, ban and unban (a ban closes the user's sockets everywhere with 4003 and
//! refuses their logins and sessions), and mute or unmute them in a conversation.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::keys::Scope;
use super::{body, existing_conversation, existing_user, id, query, Caller};
use crate::app::App;
use crate::chat::found;
use crate::config::Config;
use crate::conn::CLOSE_BANNED;
use crate::error::{Error, Result};
use crate::hub::Delivery;
use crate::model::{now_millis, ConversationId, ProfileChange, UserId};
use crate::store::server_api::{UserChange, UserRecord};
use crate::validate;

/// Characters of an `external_id`.
const EXTERNAL_ID_MAX: usize = 128;
/// The longest mute: ten years (a longer one is a ban).
const MUTE_SECS_MAX: u64 = 10 * 365 * 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserBody {
    display_name: Option<String>,
    external_id: Option<String>,
    custom: Option<serde_json::Value>,
    /// As `profile_set`: an `https://` URL or a `/v1/media/...` path; `""` clears it.
    avatar_url: Option<String>,
}

impl UserBody {
    /// The validated avatar change, as `profile_set` validates it (`Some(None)` clears it).
    fn avatar(&self) -> Result<Option<Option<String>>> {
        self.avatar_url
            .as_deref()
            .map(|url| match url {
                "" => Ok(None),
                url => validate::avatar_url(url).map(Some),
            })
            .transpose()
    }

    /// The validated change: display name as for logins, external id 1..=128 characters without control
    /// characters, custom JSON at most `max_custom_bytes`.
    fn change(self, config: &Config) -> Result<UserChange> {
        let display_name = self
            .display_name
            .map(|name| validate::name(&name, "display_name"))
            .transpose()?;
        if let Some(external_id) = &self.external_id {
            let ok = !external_id.is_empty()
                && external_id.chars().count() <= EXTERNAL_ID_MAX
                && !external_id.chars().any(char::is_control);
            if !ok {
                return Err(Error::InvalidArgs(
                    "external_id is 1..=128 characters without control characters".into(),
                ));
            }
        }
        let custom = self.custom.map(|custom| custom.to_string());
        if let Some(custom) = &custom {
            if custom.len() > config.max_custom_bytes {
                return Err(Error::MessageTooLong(format!(
                    "custom is {} bytes, more than max_custom_bytes ({})",
                    custom.len(),
                    config.max_custom_bytes
                )));
            }
        }
        Ok(UserChange {
            display_name,
            external_id: self.external_id,
            custom,
        })
    }
}

fn user_reply(user: UserRecord) -> Response {
    Json(json!({ "user": user })).into_response()
}

/// `POST /v1/server/users` (scope `users`).
pub(super) async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    bytes: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    caller.require(Scope::Users)?;
    let b = body::<UserBody>(bytes)?;
    let avatar_url = b.avatar()?.flatten();
    let change = b.change(&app.config)?;
    if change.display_name.is_none() {
        return Err(Error::InvalidArgs("display_name is required".into()));
    }
    let mut user = app.store.create_user(change).await?;
    if avatar_url.is_some() {
        // A new user has no connections nor contacts yet: nobody to push the profile to.
        let profile = ProfileChange {
            display_name: None,
            avatar_url: Some(avatar_url),
        };
        user.avatar_url = app.store.set_profile(user.id, profile).await?.avatar_url;
    }
    Ok(user_reply(user))
}

/// `GET /v1/server/users/{id}` (scope `users` or `read`).
pub(super) async fn get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> Result<Response> {
    caller.require_read(Scope::Users)?;
    let user = id(&user, "user")?;
    Ok(user_reply(existing_user(&app, user).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExternalQuery {
    external_id: String,
}

/// `GET /v1/server/users?external_id=...` (scope `users` or `read`).
pub(super) async fn by_external_id(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response> {
    caller.require_read(Scope::Users)?;
    let q: ExternalQuery = query(&uri)?;
    let user = app.store.user_by_external_id(&q.external_id).await?;
    Ok(user_reply(found(user, "no user with this external_id")?))
}

/// `PATCH /v1/server/users/{id}` (scope `users`).
pub(super) async fn update(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    bytes: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    caller.require(Scope::Users)?;
    let user = id(&user, "user")?;
    let b = body::<UserBody>(bytes)?;
    let avatar_url = b.avatar()?;
    let change = b.change(&app.config)?;
    let display_name = change.display_name.clone();
    let before = existing_user(&app, user).await?;
    let mut updated = found(app.store.update_user(user, change).await?, "no such user")?;
    // A changed name or avatar is a profile change: written and pushed (`profile`) as `profile_set` does.
    let renamed = display_name.is_some_and(|name| name != before.display_name);
    let new_avatar = avatar_url.filter(|url| *url != before.avatar_url);
    if renamed || new_avatar.is_some() {
        let profile = ProfileChange {
            display_name: renamed.then(|| updated.display_name.clone()),
            avatar_url: new_avatar,
        };
        let user = app.chat.change_profile(user, profile).await?;
        updated.display_name = user.display_name;
        updated.avatar_url = user.avatar_url;
    }
    Ok(user_reply(updated))
}

/// `POST /v1/server/users/{id}/ban` (scope `users`): refuses the user's logins and sessions from now on and
/// closes their sockets on every node with 4003.
pub(super) async fn ban(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> Result<Response> {
    let (user, banned) = set_banned(&app, &caller, &user, true).await?;
    app.bus.publish(Delivery::CloseUser {
        user_id: user,
        code: CLOSE_BANNED,
    });
    tracing::info!(user, key = %caller.name, "user banned");
    Ok(user_reply(banned))
}

/// `POST /v1/server/users/{id}/unban` (scope `users`).
pub(super) async fn unban(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> Result<Response> {
    let (_, unbanned) = set_banned(&app, &caller, &user, false).await?;
    Ok(user_reply(unbanned))
}

/// Bans or unbans the user the path names (scope `users`): their id and record, or 404.
async fn set_banned(
    app: &App,
    caller: &Caller,
    user: &str,
    banned: bool,
) -> Result<(UserId, UserRecord)> {
    caller.require(Scope::Users)?;
    let user = id(user, "user")?;
    let record = found(app.store.set_banned(user, banned).await?, "no such user")?;
    Ok((user, record))
}

/// The user the path names and the request's body, for a call that needs scope `users`.
fn user_and_body<T: DeserializeOwned>(
    caller: &Caller,
    user: &str,
    bytes: std::result::Result<Bytes, BytesRejection>,
) -> Result<(UserId, T)> {
    caller.require(Scope::Users)?;
    Ok((id(user, "user")?, body(bytes)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MuteBody {
    conversation_id: ConversationId,
    /// How long; absent: until unmuted.
    duration_secs: Option<u64>,
}

/// `POST /v1/server/users/{id}/mute` (scope `users`): the member's `send` to the conversation answers
/// `muted` until then.
pub(super) async fn mute(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    bytes: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let (user, b): (UserId, MuteBody) = user_and_body(&caller, &user, bytes)?;
    let until = match b.duration_secs {
        Some(secs) if secs == 0 || secs > MUTE_SECS_MAX => {
            return Err(Error::InvalidArgs(format!(
                "duration_secs is 1..={MUTE_SECS_MAX}"
            )))
        }
        Some(secs) => now_millis() + (secs as i64) * 1000,
        None => i64::MAX,
    };
    set_muted(&app, user, b.conversation_id, Some(until)).await?;
    let until = (until != i64::MAX).then_some(until);
    Ok(Json(json!({ "muted_until": until })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnmuteBody {
    conversation_id: ConversationId,
}

/// `POST /v1/server/users/{id}/unmute` (scope `users`).
pub(super) async fn unmute(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    bytes: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let (user, b): (UserId, UnmuteBody) = user_and_body(&caller, &user, bytes)?;
    set_muted(&app, user, b.conversation_id, None).await?;
    Ok(Json(json!({})).into_response())
}

/// 404 for an unknown user or conversation, 403 `forbidden` when the user is not a member.
async fn set_muted(
    app: &App,
    user: i64,
    conversation: ConversationId,
    until: Option<i64>,
) -> Result<()> {
    existing_user(app, user).await?;
    existing_conversation(app, conversation).await?;
    match app.store.set_muted(conversation, user, until).await? {
        true => Ok(()),
        false => Err(Error::Forbidden(
            "the user is not a member of this conversation",
        )),
    }
}

//! Messages: send into a conversation as a user or as the system account (the client's `send` itself, so
//! with the same idempotency by cmid, seq and pushes), read a conversation's history by seq range, and
//! broadcast an ephemeral event to a user or a conversation, and remove a message (a tombstone, as a room
//! owner's `message_remove`, with the same `message_state` push).

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
use super::{body, existing_conversation, existing_user, id, query, reply, system_user, Caller};
use crate::app::App;
use crate::chat::EventTarget;
use crate::error::{Error, Result};
use crate::model::{ConversationId, Range, UserId};
use crate::protocol::op::Seq;
use crate::protocol::op::{SendArgs, SentKind};
use crate::store::StateChange;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendBody {
    conversation_id: Option<ConversationId>,
    /// A user's direct conversation: with `sender_id`, or with the system account.
    to_user: Option<UserId>,
    /// The sending user (a member of the conversation); absent: the system account.
    sender_id: Option<UserId>,
    cmid: String,
    #[serde(default)]
    kind: SentKind,
    #[serde(default)]
    content: serde_json::Value,
    /// Runs WeChat's content check on the text, as for a client's send (the backend relays user content).
    #[serde(default)]
    content_check: bool,
}

/// `POST /v1/server/messages` (scope `messages`).
pub(super) async fn send(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    bytes: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    caller.require(Scope::Messages)?;
    let b: SendBody = body(bytes)?;
    let (sender, conversation_id, to_user) = match (b.sender_id, b.conversation_id, b.to_user) {
        (_, Some(_), Some(_)) | (_, None, None) => {
            return Err(Error::InvalidArgs(
                "give exactly one of conversation_id and to_user".into(),
            ))
        }
        (Some(sender), conversation, to_user) => {
            existing_user(&app, sender).await?;
            (sender, conversation, to_user)
        }
        (None, Some(conversation), None) => (system_user(&app).await?.id, Some(conversation), None),
        (None, None, Some(user)) => {
            existing_user(&app, user).await?;
            let system = system_user(&app).await?.id;
            (
                system,
                Some(app.chat.system_direct(system, user).await?),
                None,
            )
        }
    };
    if let Some(conversation) = conversation_id {
        existing_conversation(&app, conversation).await?;
    }
    if let Some(user) = to_user {
        existing_user(&app, user).await?;
    }
    let args = SendArgs {
        conversation_id,
        to_user,
        cmid: b.cmid,
        kind: b.kind,
        content: b.content,
    };
    Ok(reply(
        app.chat.server_send(sender, args, b.content_check).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    before_seq: Option<Seq>,
    after_seq: Option<Seq>,
    limit: Option<NonZeroUsize>,
}

/// `GET /v1/server/conversations/{id}/messages?after_seq=|before_seq=&limit=` (scope `messages` or
/// `read`): one page in ascending seq order.
pub(super) async fn history(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(conversation): Path<String>,
    uri: Uri,
) -> Result<Response> {
    caller.require_read(Scope::Messages)?;
    let conversation = id(&conversation, "conversation")?;
    let q: HistoryQuery = query(&uri)?;
    let range = match (q.before_seq, q.after_seq) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidArgs(
                "give before_seq or after_seq, not both".into(),
            ))
        }
        (Some(before), None) => Range::Before(before.0),
        (None, Some(after)) => Range::After(after.0),
        (None, None) => Range::Latest,
    };
    existing_conversation(&app, conversation).await?;
    Ok(reply(
        app.chat
            .server_history(conversation, range, q.limit)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventBody {
    user_id: Option<UserId>,
    conversation_id: Option<ConversationId>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// `POST /v1/server/events` (scope `messages`): an `event` push, not stored, to one user's connections or
/// a conversation's members'.
pub(super) async fn event(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    bytes: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    caller.require(Scope::Messages)?;
    let b: EventBody = body(bytes)?;
    let kind_ok = !b.kind.is_empty()
        && b.kind.len() <= 64
        && b.kind
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'));
    if !kind_ok {
        return Err(Error::InvalidArgs(
            "type must be 1..=64 characters of [A-Za-z0-9_.:-]".into(),
        ));
    }
    let size = b.data.to_string().len();
    if size > app.config.max_custom_bytes {
        return Err(Error::MessageTooLong(format!(
            "data is {size} bytes, more than max_custom_bytes ({})",
            app.config.max_custom_bytes
        )));
    }
    let target = match (b.user_id, b.conversation_id) {
        (Some(user), None) => {
            existing_user(&app, user).await?;
            EventTarget::User(user)
        }
        (None, Some(conversation)) => {
            existing_conversation(&app, conversation).await?;
            EventTarget::Conversation(conversation)
        }
        _ => {
            return Err(Error::InvalidArgs(
                "give exactly one of user_id and conversation_id".into(),
            ))
        }
    };
    app.chat.server_event(target, &b.kind, &b.data);
    Ok(Json(json!({})).into_response())
}

/// `DELETE /v1/server/conversations/{id}/messages/{seq}` (scope `messages`): the message becomes a tombstone
/// in state `removed` (content erased, seq kept) and every member's connections get a `message_state` push
/// without `by`. `404 not_found` for an unknown conversation or seq; a message already recalled or removed
/// answers 200 with `"changed": false` (nothing is pushed).
pub(super) async fn remove(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path((conversation, seq)): Path<(String, String)>,
) -> Result<Response> {
    caller.require(Scope::Messages)?;
    let conversation = id(&conversation, "conversation")?;
    let seq = id(&seq, "message seq")?;
    let changed = app
        .chat
        .change_message(conversation, seq, StateChange::RemoveByServer)
        .await?;
    Ok(Json(json!({ "changed": changed })).into_response())
}

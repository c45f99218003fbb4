//! The chat service: every WebSocket operation, authorised against the store, with its pushes published on
//! the bus. Transport-agnostic: it takes decoded operations ([`Op`]) and returns results or errors.
//!
//! One file per group of operations, each operation a small function taking the caller and its typed
//! arguments: `messages` (send, history, sync), `rooms` (conversations and membership), `presence`
//! (presence, typing), `read` (read marks), `profiles` (profile_set, user_search, contacts), `recall`
//! (recall, message_remove, hide), `wechat` (content check, offline notification, notify_grant). `session` registers and ends connections; `fanout` turns
//! committed messages into pushes; `summaries` coalesces the membership changes of big rooms. `paging`
//! bounds every reply and `limits` holds the per-user rate limits.

mod client_stats;
pub mod fanout;
mod grants;
mod hooks;

mod media;
mod messages;
pub mod offline;
pub mod order;
mod paging;
mod presence;
mod profiles;
mod read;
mod recall;
mod rooms;
mod server_api;
mod session;
mod summaries;
mod wechat;

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use serde_json::value::{to_raw_value, RawValue};

pub use server_api::{found, EventTarget};

use crate::bus::Bus;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hub::{ConnId, Hub};
use crate::model::{now_millis, ConversationId, UserId};
use crate::protocol::Op;
use crate::store::Store;

/// The caller of an operation: one connection of one user.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: UserId,
    pub conn_id: ConnId,
}

pub struct Chat {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    hub: Arc<Hub>,
    config: Arc<Config>,
    summaries: Arc<summaries::Summaries>,
    room_adds: crate::limits::PerUser,
    lookups: crate::limits::PerUser,
    hooks: Arc<hooks::Hooks>,
    profile_sets: crate::limits::PerUser,
    /// `client_stats` reports, per connection.
    client_reports: crate::limits::PerKey<crate::hub::ConnId>,
    /// Signs media download URLs (`media_url`); `None` when `media_secret` was not resolved.
    media_signer: Option<crate::media::Signer>,
    /// Where media bytes live: a medium no message carries any more is deleted from it (`media::release`).
    media_storage: Option<Arc<dyn crate::media::Storage>>,
}

pub use hooks::Hooks;

impl Chat {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        hub: Arc<Hub>,
        config: Arc<Config>,
    ) -> Chat {
        Chat {
            summaries: summaries::Summaries::new(store.clone(), bus.clone()),
            room_adds: crate::limits::PerUser::per_minute(config.room_adds_per_min),
            lookups: crate::limits::PerUser::per_minute(config.lookups_per_min),
            hooks: Arc::default(),
            profile_sets: crate::limits::PerUser::per_minute(profiles::PROFILE_SETS_PER_MIN),
            client_reports: crate::limits::PerKey::per_minute(client_stats::REPORTS_PER_MIN),
            media_signer: crate::media::Signer::from_config(&config).ok(),
            media_storage: None,
            store,
            bus,
            hub,
            config,
        }
    }

    /// Runs one operation for `caller`.
    pub async fn handle(&self, caller: Caller, op: Op) -> Result<Box<RawValue>> {
        match op {
            Op::Ping(_) => ping(),
            Op::UserFind(args) => self.user_find(caller, args).await,
            Op::DirectOpen(args) => self.direct_open(caller, args).await,
            Op::RoomCreate(args) => self.room_create(caller, args).await,
            Op::RoomJoin(args) => self.room_join(caller, args).await,
            Op::RoomAdd(args) => self.room_add(caller, args).await,
            Op::RoomRemove(args) => self.room_remove(caller, args).await,
            Op::RoomLeave(args) => self.room_leave(caller, args).await,
            Op::RoomMembers(args) => self.room_members(caller, args).await,
            Op::RoomsPublic(args) => self.rooms_public(args).await,
            Op::Conversations(args) => self.conversations(caller, args).await,
            Op::Send(args) => self.send(caller, args).await,
            Op::History(args) => self.history(caller, args).await,
            Op::Sync(args) => self.sync(caller, args).await,
            Op::Read(args) => self.read(caller, args).await,
            Op::Typing(args) => self.typing(caller, args).await,
            Op::Presence(args) => self.presence(caller, args).await,
            Op::ProfileSet(args) => self.profile_set(caller, args).await,
            Op::UserSearch(args) => self.user_search(caller, args).await,
            Op::Contacts(args) => self.contacts(caller, args).await,
            Op::Recall(args) => self.recall(caller, args).await,
            Op::MessageRemove(args) => self.message_remove(caller, args).await,
            Op::Hide(args) => self.hide(caller, args).await,
            Op::MediaUrl(args) => self.media_url(caller, args).await,
            Op::ClientStats(args) => self.client_stats(caller, args),
            Op::NotifyGrant(args) => self.notify_grant(caller, args).await,
            // A connection's credentials are its own: the WebSocket answers it (`conn/refresh.rs`); a Wafer
            // tunnel, the only other caller, never sends it.
            Op::AuthRefresh(_) => Err(Error::BadRequest(
                "auth_refresh is answered by a WebSocket connection only".into(),
            )),
        }
    }

    async fn require_member(&self, conversation: ConversationId, user: UserId) -> Result<()> {
        if self.store.is_member(conversation, user).await? {
            Ok(())
        } else {
            // Same answer for "absent" and "not yours": ids of other people's conversations stay private.
            Err(Error::Forbidden(
                "you are not a member of this conversation",
            ))
        }
    }
}

/// The application heartbeat, for clients that cannot send WebSocket pings: answers the server time.
fn ping() -> Result<Box<RawValue>> {
    raw(&json!({ "ts": now_millis() }))
}

/// Encodes an operation's result.
fn raw(value: &impl Serialize) -> Result<Box<RawValue>> {
    to_raw_value(value).map_err(|e| Error::Internal(format!("encode result: {e}")))
}

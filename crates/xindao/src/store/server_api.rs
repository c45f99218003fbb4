//! What the server API (docs/server-api.md) needs of the store beyond the chat's own calls: API keys, users a
//! business backend manages (its own `external_id`, `custom` data, bans), mutes, the system account, and room
//! renames and archiving. A supertrait of [`super::Store`], so that both backends implement it beside the
//! rest and `dyn Store` reaches it, without widening the chat's own trait.

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;
use crate::model::{ConversationId, Millis, User, UserId};

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    /// Comma-separated scope names (`messages,rooms,users,sessions,read`).
    pub scopes: String,
    pub created_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Millis>,
}

/// A user as the server API shows it: the chat's `User` plus what only a backend sees.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UserRecord {
    pub id: UserId,
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
    pub banned: bool,
    /// True for the system account.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
    pub created_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

impl UserRecord {
    /// The chat's view of this user.
    pub fn user(&self) -> User {
        User {
            id: self.id,
            display_name: self.display_name.clone(),
            avatar_url: self.avatar_url.clone(),
        }
    }
}

/// Fields of a user to change; `None` leaves one as it is. `custom` and `external_id` are already validated
/// (`custom` is the JSON text).
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub display_name: Option<String>,
    pub external_id: Option<String>,
    pub custom: Option<String>,
}

/// The name of the one system account in `users.system_name`.
pub const SYSTEM_ACCOUNT: &str = "system";

#[async_trait]
pub trait ServerApiStore: Send + Sync {
    /// Stores a new key; `Conflict` when the name is taken.
    async fn create_api_key(&self, name: &str, key_hash: [u8; 32], scopes: &str) -> Result<ApiKey>;
    /// Every key, revoked ones too, oldest first.
    async fn api_keys(&self) -> Result<Vec<ApiKey>>;
    /// Revokes the key of this name; false when there is none, or it already was revoked.
    async fn revoke_api_key(&self, name: &str) -> Result<bool>;
    /// The key with this hash, revoked or not.
    async fn api_key_by_hash(&self, key_hash: [u8; 32]) -> Result<Option<ApiKey>>;

    /// Creates a user; `Conflict` when `external_id` is taken.
    async fn create_user(&self, change: UserChange) -> Result<UserRecord>;
    /// Changes a user; `None` when there is no such user; `Conflict` when `external_id` is taken.
    async fn update_user(&self, id: UserId, change: UserChange) -> Result<Option<UserRecord>>;
    async fn user_record(&self, id: UserId) -> Result<Option<UserRecord>>;
    async fn user_by_external_id(&self, external_id: &str) -> Result<Option<UserRecord>>;
    /// Bans (`true`) or unbans a user; `None` when there is no such user. A banned user's sessions stop
    /// authenticating ([`super::Store::touch_session`] finds none) and logins are refused.
    async fn set_banned(&self, id: UserId, banned: bool) -> Result<Option<UserRecord>>;
    async fn is_banned(&self, id: UserId) -> Result<bool>;
    /// Mutes a member of a conversation until `until` (`None`: unmutes). False when they are not a member.
    async fn set_muted(
        &self,
        conversation: ConversationId,
        user: UserId,
        until: Option<Millis>,
    ) -> Result<bool>;

    /// The system account, created on first use with this display name.
    async fn system_user(&self, display_name: &str) -> Result<User>;
    /// The direct conversation of the system account and `user`, created if needed (then the flag is true).
    /// The system account's own membership is not capped; the user's is. `NotFound` for an unknown user.
    async fn open_system_direct(
        &self,
        system: UserId,
        user: UserId,
    ) -> Result<(ConversationId, bool)>;
    /// Renames a room; `NotFound` when there is no such room (or it is archived).
    async fn rename_room(&self, conversation: ConversationId, name: &str) -> Result<()>;
    /// Archives a room: every member removed, no owner, invite-only, history kept. Returns the members it
    /// had. `NotFound` when there is no such room (or it already is archived).
    async fn archive_room(&self, conversation: ConversationId) -> Result<Vec<UserId>>;
    /// A room's owner and whether it is archived; `None` when the id names no room.
    async fn room_state(&self, conversation: ConversationId) -> Result<Option<RoomState>>;
    /// Whether the id names a conversation (room or direct).
    async fn conversation_exists(&self, conversation: ConversationId) -> Result<bool>;
}

/// What the server API needs to know about a room before changing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomState {
    pub owner_id: Option<UserId>,
    pub archived: bool,
}

/// Reads a stored `custom` column: JSON text, or nothing. Text that is not JSON (never written by xindao)
/// reads as nothing.
pub(crate) fn custom_from_stored(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|text| serde_json::from_str(&text).ok())
}

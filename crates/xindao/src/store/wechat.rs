//! The WeChat seam of the store: the shared `access_token` (one per app for every node, refreshed by the one
//! node that claims it), users' openids, and the one-time subscribe-message grants with their coalescing
//! marks. A trait of its own (a supertrait of [`super::Store`]) so that the WeChat code stays in its own files
//! in both backends.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{ConversationId, Millis, UserId};

/// The stored `access_token` of an app. `use_until` is ahead of WeChat's expiry by a margin: past it the
/// token is refreshed. An empty token (`use_until` 0) means none was fetched yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub token: String,
    pub use_until: Millis,
    /// A node fetching a new token holds this claim until then; others wait for its result.
    pub lease_until: Millis,
}

/// What [`WeChatStore::notify_take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyTake {
    /// A grant was consumed and the window marked: send.
    Taken,
    /// One was sent about the conversation within the window (coalesced).
    InWindow,
    /// The user holds no grant of the template.
    NoGrant,
}

#[async_trait]
pub trait WeChatStore: Send + Sync {
    /// The stored token of `appid`, if any row exists.
    async fn wechat_token(&self, appid: &str) -> Result<Option<StoredToken>>;
    /// Claims the right to fetch the next token of `appid` until `lease_until`: compare-and-set on the
    /// `use_until` the caller saw (0 when it saw no row), won only while no other claim is live at `now`.
    async fn wechat_token_claim(
        &self,
        appid: &str,
        seen_use_until: Millis,
        now: Millis,
        lease_until: Millis,
    ) -> Result<bool>;
    /// Stores a freshly fetched token and ends the claim.
    async fn wechat_token_put(&self, appid: &str, token: &str, use_until: Millis) -> Result<()>;
    /// The WeChat openid of a user who logged in with WeChat.
    async fn user_openid(&self, user: UserId) -> Result<Option<String>>;
    /// Adds `count` one-time grants of `template` to `user`, keeping at most `max`; returns how many are held.
    async fn notify_grant(&self, user: UserId, template: &str, count: i64, max: i64)
        -> Result<i64>;
    /// Consumes one grant of `template` for a notification of `user` about `conversation`, unless one was
    /// sent about it after `now - window_ms` (coalescing) or no grant is left: `Taken` when the caller may
    /// send. One transaction, so that two nodes cannot both send for the same window.
    async fn notify_take(
        &self,
        user: UserId,
        conversation: ConversationId,
        template: &str,
        now: Millis,
        window_ms: i64,
    ) -> Result<NotifyTake>;
    /// Gives back a grant taken for a notification that could not be sent (WeChat unreachable).
    async fn notify_give_back(&self, user: UserId, template: &str) -> Result<()>;
    /// Clears the grants of `template` (WeChat answered 43101: the user refused or holds none).
    async fn notify_clear(&self, user: UserId, template: &str) -> Result<()>;
}

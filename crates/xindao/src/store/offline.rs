//! The offline-notification seam of the store: the coalescing marks that make "at most one notification per
//! user and conversation per window" hold for a whole cluster, not per node. A mark is claimed with one
//! conditional upsert (`... ON CONFLICT DO UPDATE ... WHERE at <= now - window`): of two nodes claiming the
//! same window, exactly one changes the row. Marks older than their window mean nothing and are deleted by
//! housekeeping, which keeps the tables as small as the set of users notified within one window.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{ConversationId, Millis, UserId};
use crate::store::OutboxEvent;

/// A `user.offline_message` event for `user` about `conversation`, kept only if its window is claimed.
pub struct OfflineCandidate {
    pub user: UserId,
    pub conversation: ConversationId,
    pub event: OutboxEvent,
}

/// What claiming one candidate's window came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowClaim {
    /// The window was claimed and the event written.
    Won,
    /// Held back: the window was claimed at `since` (by another node, or earlier in the same call).
    Held { since: Millis },
}

#[async_trait]
pub trait OfflineStore: Send + Sync {
    /// In one transaction: for each candidate, claims the `user.offline_message` mark of its user and
    /// conversation unless one was claimed after `now - window_ms`, and writes the event of each claim won
    /// to the webhook outbox. Returns, in order, what each candidate's claim came to (the claim time of a
    /// window held back, so that the caller can remember when it ends).
    async fn offline_enqueue(
        &self,
        candidates: Vec<OfflineCandidate>,
        now: Millis,
        window_ms: i64,
    ) -> Result<Vec<WindowClaim>>;
    /// Deletes the marks that no longer hold anything back: `user.offline_message` marks claimed before
    /// `webhook_before`, WeChat notification marks before `wechat_before`. Returns how many were deleted.
    async fn offline_marks_forget(
        &self,
        webhook_before: Millis,
        wechat_before: Millis,
    ) -> Result<u64>;
}

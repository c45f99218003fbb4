//! The PostgreSQL store, for several xindao nodes sharing one database (`store = "postgres://..."`).
//!
//! Same semantics as the SQLite store. Message appends go through up to four group-commit tasks per node
//! (`writer.rs`), each owning a share of the conversations; every other call takes a pooled connection.
//! When the database cannot be reached, calls fail with `unavailable` (nothing was committed) and succeed
//! again once it is back.

mod media;
mod outbox;
mod pool;
mod profiles;
mod reads;
mod recall;
mod rooms;
mod rows;
mod server_api;
mod tls;
mod users;
mod wechat;
mod writer;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use parking_lot::Mutex;

pub(crate) use rows::map_pg;

use super::group_commit::AppendQueue;
use super::{LoginIdentity, SessionExpiry, SessionInfo, StateChange, Store};
use crate::error::Result;
use crate::model::*;
use crate::rules::{self, SessionTouch};

/// PostgreSQL implementation of [`Store`].
pub struct PostgresStore {
    pool: Pool,
    appends: AppendQueue,
    writer_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    caps: rules::Caps,
    outbox: std::sync::Arc<super::Outbox>,
}

#[async_trait]
impl Store for PostgresStore {
    async fn upsert_user(&self, identity: LoginIdentity) -> Result<User> {
        users::upsert(self, identity).await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        users::by_id(self, id).await
    }

    async fn users_named(&self, display_name: &str, limit: usize) -> Result<Vec<User>> {
        users::named(self, display_name, limit).await
    }

    async fn create_session(
        &self,
        token_hash: [u8; 32],
        user_id: UserId,
        expires_at: Millis,
        expiry: SessionExpiry,
    ) -> Result<()> {
        users::create_session(self, &token_hash, user_id, expires_at, expiry).await
    }

    async fn touch_session(
        &self,
        token_hash: [u8; 32],
        now: Millis,
        ttl_ms: i64,
    ) -> Result<Option<SessionInfo>> {
        let Some((user_id, extended_at, expires_at)) = users::session(self, &token_hash).await?
        else {
            return Ok(None);
        };
        let expires_at = match rules::touch_session(extended_at, expires_at, now, ttl_ms) {
            SessionTouch::Expired => return Ok(None),
            SessionTouch::Valid { expires_at } => expires_at,
            SessionTouch::Extend { expires_at } => {
                users::extend_session(self, &token_hash, now, expires_at).await?;
                expires_at
            }
        };
        Ok(Some(SessionInfo {
            user_id,
            expires_at,
            expiry: SessionExpiry::of(extended_at, expires_at),
        }))
    }

    async fn revoke_session(&self, token_hash: [u8; 32]) -> Result<()> {
        users::revoke_session(self, &token_hash).await
    }

    async fn create_ticket(
        &self,
        ticket_hash: [u8; 32],
        token_hash: [u8; 32],
        expires_at: Millis,
    ) -> Result<()> {
        users::create_ticket(self, &ticket_hash, &token_hash, expires_at).await
    }

    async fn take_ticket(&self, ticket_hash: [u8; 32], now: Millis) -> Result<Option<[u8; 32]>> {
        users::take_ticket(self, &ticket_hash, now).await
    }

    async fn delete_expired(&self, now: Millis, limit: usize) -> Result<usize> {
        users::delete_expired(self, now, limit).await
    }

    async fn open_direct(&self, user: UserId, peer: UserId) -> Result<(ConversationId, bool)> {
        rooms::open_direct(self, user, peer).await
    }

    async fn create_room(
        &self,
        owner: UserId,
        name: &str,
        visibility: Visibility,
    ) -> Result<ConversationId> {
        rooms::create_room(self, owner, name, visibility).await
    }

    async fn join_room(
        &self,
        conversation: ConversationId,
        user: UserId,
        by: Option<UserId>,
    ) -> Result<bool> {
        rooms::join_room(self, conversation, user, by).await
    }

    async fn leave_room(
        &self,
        conversation: ConversationId,
        user: UserId,
        by: Option<UserId>,
    ) -> Result<bool> {
        rooms::leave_room(self, conversation, user, by).await
    }

    async fn members(
        &self,
        conversation: ConversationId,
        cursor: Option<MemberCursor>,
        limit: usize,
    ) -> Result<Vec<Member>> {
        reads::members(self, conversation, cursor, limit).await
    }

    async fn member_count(&self, conversation: ConversationId) -> Result<i64> {
        reads::member_count(self, conversation).await
    }

    async fn is_member(&self, conversation: ConversationId, user: UserId) -> Result<bool> {
        reads::is_member(self, conversation, user).await
    }

    async fn conversation_for(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<Conversation> {
        reads::conversation_for(self, conversation, user).await
    }

    async fn conversations_page(
        &self,
        user: UserId,
        cursor: Option<ActivityCursor>,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        reads::conversations_page(self, user, cursor, limit).await
    }

    async fn sync_scan(
        &self,
        user: UserId,
        after: ConversationId,
        until: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<(ConversationId, i64)>> {
        reads::sync_scan(self, user, after, until, limit).await
    }

    async fn sharing_with(&self, user: UserId, others: &[UserId]) -> Result<Vec<UserId>> {
        reads::sharing_with(self, user, others).await
    }

    async fn direct_between(&self, user: UserId, peer: UserId) -> Result<Option<ConversationId>> {
        let (lo, hi) = (user.min(peer), user.max(peer));
        let row = self
            .query_opt(
                "SELECT id FROM conversations WHERE direct_lo = $1 AND direct_hi = $2",
                &[&lo, &hi],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn connection_state(&self, user: UserId) -> Result<Option<(User, Vec<ConversationId>)>> {
        reads::connection_state(self, user).await
    }

    async fn public_rooms(&self, limit: usize) -> Result<Vec<PublicRoom>> {
        reads::public_rooms(self, limit).await
    }

    async fn append(&self, message: NewMessage, origin: u64) -> Result<Appended> {
        self.appends.append(message, origin).await
    }

    async fn history(
        &self,
        conversation: ConversationId,
        range: Range,
        limit: usize,
    ) -> Result<Page> {
        reads::history(self, conversation, range, limit).await
    }

    async fn mark_read(&self, conversation: ConversationId, user: UserId, seq: i64) -> Result<i64> {
        reads::mark_read(self, conversation, user, seq).await
    }

    async fn webhook_enqueue(&self, events: Vec<super::OutboxEvent>) -> Result<()> {
        self.outbox_enqueue(events).await
    }

    async fn webhook_settle_and_claim(
        &self,
        settled: super::Settlement,
        claim: super::Claim,
    ) -> Result<Vec<super::OutboxRow>> {
        self.outbox_settle_and_claim(settled, claim).await
    }

    async fn webhook_dead(
        &self,
        endpoint: Option<String>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<super::DeadRow>> {
        self.outbox_dead(endpoint, after, limit).await
    }

    async fn webhook_redrive(&self, ids: Option<Vec<i64>>) -> Result<usize> {
        self.outbox_redrive(ids).await
    }

    async fn webhook_depth(&self) -> Result<(i64, Option<Millis>)> {
        self.outbox_depth().await
    }

    async fn set_profile(&self, user: UserId, change: ProfileChange) -> Result<User> {
        profiles::set_profile(self, user, change).await
    }

    async fn users_by_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<User>> {
        profiles::by_prefix(self, prefix, limit).await
    }

    async fn contacts(&self, user: UserId, after: UserId, limit: usize) -> Result<Vec<User>> {
        profiles::contacts(self, user, after, limit).await
    }

    async fn set_message_state(
        &self,
        conversation: ConversationId,
        seq: i64,
        change: StateChange,
    ) -> Result<Option<Message>> {
        recall::set_state(self, conversation, seq, change).await
    }

    async fn hide_message(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: i64,
    ) -> Result<bool> {
        recall::hide(self, user, conversation, seq).await
    }

    async fn hidden_seqs(
        &self,
        user: UserId,
        conversation: ConversationId,
        from: i64,
        to: i64,
    ) -> Result<Vec<i64>> {
        recall::hidden_seqs(self, user, conversation, from, to).await
    }

    async fn healthy(&self) -> bool {
        self.appends.is_open() && self.query("SELECT 1", &[]).await.is_ok()
    }

    async fn shutdown(&self) {
        // Dropping the senders lets each commit task finish the jobs it already has, then exit.
        self.appends.close();
        let tasks = std::mem::take(&mut *self.writer_tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
        self.pool.close();
        tracing::info!("PostgreSQL store closed");
    }
}

//! The embedded default store: SQLite in WAL mode, one writer connection, a small pool of readers.
//!
//! Message appends go through the group-commit thread (`writer.rs`); other writes (logins, rooms, read
//! markers) take the writer connection briefly on the blocking pool. Reads use separate connections, which WAL
//! lets run beside the writer and which only ever see committed transactions. WAL checkpoints run on a thread
//! of their own (`checkpoint.rs`), so no commit waits for the disk.

mod checkpoint;
mod connections;
mod lifecycle;
mod media;
mod outbox;
mod profiles;
mod reads;
mod recall;
mod rooms;
mod rows;
mod server_api;
mod users;
mod wechat;
mod writer;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::Semaphore;

pub(crate) use super::backend_errors::map_sqlite;
use super::group_commit::AppendQueue;
use super::{LoginIdentity, SessionExpiry, SessionInfo, StateChange, Store};
use crate::error::Result;
use crate::model::*;
use crate::rules;
use lifecycle::open_connection;
pub use lifecycle::SqliteOptions;

/// SQLite implementation of [`Store`].
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<[Mutex<Connection>]>,
    next_reader: AtomicUsize,
    /// One permit per reader and one for the writer: calls beyond them wait as tasks instead of each parking
    /// a blocking-pool thread on a connection's mutex (a login storm used to start hundreds of threads).
    read_slots: Arc<Semaphore>,
    write_slot: Arc<Semaphore>,
    appends: AppendQueue,
    /// Wakes the checkpointer after other writes than appends; taken at shutdown so that it can stop.
    checkpoint: Mutex<Option<checkpoint::Nudge>>,
    /// The commit thread, then the checkpointer (which ends when the commit thread does).
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    caps: rules::Caps,
    outbox: Arc<super::Outbox>,
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_user(&self, identity: LoginIdentity) -> Result<User> {
        self.write(move |conn| users::upsert(conn, &identity).map_err(map_sqlite))
            .await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        self.read_quick(move |conn| rows::load_user(conn, id)).await
    }

    async fn users_named(&self, display_name: &str, limit: usize) -> Result<Vec<User>> {
        let name = display_name.to_string();
        self.read(move |conn| users::named(conn, &name, limit))
            .await
    }

    async fn create_session(
        &self,
        token_hash: [u8; 32],
        user_id: UserId,
        expires_at: Millis,
        expiry: SessionExpiry,
    ) -> Result<()> {
        self.write(move |c| users::create_session(c, &token_hash, user_id, expires_at, expiry))
            .await
    }

    async fn touch_session(
        &self,
        token_hash: [u8; 32],
        now: Millis,
        ttl_ms: i64,
    ) -> Result<Option<SessionInfo>> {
        self.touch(token_hash, now, ttl_ms).await
    }

    async fn revoke_session(&self, token_hash: [u8; 32]) -> Result<()> {
        self.write(move |conn| users::revoke_session(conn, &token_hash).map_err(map_sqlite))
            .await
    }

    async fn create_ticket(
        &self,
        ticket_hash: [u8; 32],
        token_hash: [u8; 32],
        expires_at: Millis,
    ) -> Result<()> {
        self.write(move |conn| {
            users::create_ticket(conn, &ticket_hash, &token_hash, expires_at).map_err(map_sqlite)
        })
        .await
    }

    async fn take_ticket(&self, ticket_hash: [u8; 32], now: Millis) -> Result<Option<[u8; 32]>> {
        self.write(move |conn| users::take_ticket(conn, &ticket_hash, now).map_err(map_sqlite))
            .await
    }

    async fn delete_expired(&self, now: Millis, limit: usize) -> Result<usize> {
        self.write(move |conn| users::delete_expired(conn, now, limit).map_err(map_sqlite))
            .await
    }

    async fn open_direct(&self, user: UserId, peer: UserId) -> Result<(ConversationId, bool)> {
        rules::may_open_direct(user, peer)?;
        let (lo, hi) = (user.min(peer), user.max(peer));
        // Sending with `to_user` opens the conversation on every send: answer that from a reader.
        if let Some(id) = self
            .read_quick(move |conn| rooms::find_direct(conn, lo, hi))
            .await?
        {
            return Ok((id, false));
        }
        let caps = self.caps;
        self.write(move |conn| rooms::open_direct(conn, user, peer, &caps))
            .await
    }

    async fn create_room(
        &self,
        owner: UserId,
        name: &str,
        visibility: Visibility,
    ) -> Result<ConversationId> {
        let name = name.to_string();
        let caps = self.caps;
        self.write(move |conn| rooms::create_room(conn, owner, &name, visibility, &caps))
            .await
    }

    async fn join_room(
        &self,
        conversation: ConversationId,
        user: UserId,
        by: Option<UserId>,
    ) -> Result<bool> {
        let caps = self.caps;
        self.write(move |conn| rooms::join_room(conn, conversation, user, by, &caps))
            .await
    }

    async fn leave_room(
        &self,
        conversation: ConversationId,
        user: UserId,
        by: Option<UserId>,
    ) -> Result<bool> {
        self.write(move |conn| rooms::leave_room(conn, conversation, user, by))
            .await
    }

    async fn members(
        &self,
        conversation: ConversationId,
        cursor: Option<MemberCursor>,
        limit: usize,
    ) -> Result<Vec<Member>> {
        self.read(move |conn| rooms::members(conn, conversation, cursor, limit))
            .await
    }

    async fn member_count(&self, conversation: ConversationId) -> Result<i64> {
        self.read_quick(move |conn| rooms::member_count(conn, conversation))
            .await
    }

    async fn is_member(&self, conversation: ConversationId, user: UserId) -> Result<bool> {
        self.read_quick(move |conn| reads::is_member(conn, conversation, user))
            .await
    }

    async fn conversation_for(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<Conversation> {
        let found = self
            .read(move |conn| reads::conversation_for(conn, conversation, user))
            .await?;
        match found {
            Some(conversation) => Ok(conversation),
            None => {
                let exists = self
                    .read(move |conn| reads::conversation_exists(conn, conversation))
                    .await?;
                Err(rules::unseen_conversation(exists))
            }
        }
    }

    async fn conversations_page(
        &self,
        user: UserId,
        cursor: Option<ActivityCursor>,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        self.read(move |conn| reads::conversations_page(conn, user, cursor, limit))
            .await
    }

    async fn sync_scan(
        &self,
        user: UserId,
        after: ConversationId,
        until: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<(ConversationId, i64)>> {
        self.read(move |conn| reads::sync_scan(conn, user, after, until, limit))
            .await
    }

    async fn sharing_with(&self, user: UserId, others: &[UserId]) -> Result<Vec<UserId>> {
        let others = others.to_vec();
        self.read(move |conn| reads::sharing_with(conn, user, &others))
            .await
    }

    async fn direct_between(&self, user: UserId, peer: UserId) -> Result<Option<ConversationId>> {
        let (lo, hi) = (user.min(peer), user.max(peer));
        self.read_quick(move |conn| rooms::find_direct(conn, lo, hi))
            .await
    }

    async fn connection_state(&self, user: UserId) -> Result<Option<(User, Vec<ConversationId>)>> {
        self.read_quick(move |conn| reads::connection_state(conn, user))
            .await
    }

    async fn public_rooms(&self, limit: usize) -> Result<Vec<PublicRoom>> {
        self.read(move |conn| reads::public_rooms(conn, limit))
            .await
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
        self.read(move |conn| reads::history(conn, conversation, range, limit))
            .await
    }

    async fn mark_read(&self, conversation: ConversationId, user: UserId, seq: i64) -> Result<i64> {
        self.write(move |conn| {
            reads::mark_read(conn, conversation, user, seq)
                .map_err(map_sqlite)?
                .ok_or_else(rules::not_a_member)
        })
        .await
    }
    async fn webhook_enqueue(&self, events: Vec<super::OutboxEvent>) -> Result<()> {
        if !self.outbox.is_active() {
            return Ok(());
        }
        let box_ = self.outbox.clone();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(map_sqlite)?;
            outbox::insert(&tx, &box_, &events, now_millis()).map_err(map_sqlite)?;
            tx.commit().map_err(map_sqlite)?;
            box_.committed();
            Ok(())
        })
        .await
    }

    async fn webhook_settle_and_claim(
        &self,
        settled: super::Settlement,
        claim: super::Claim,
    ) -> Result<Vec<super::OutboxRow>> {
        self.write(move |conn| outbox::settle_and_claim(conn, &settled, &claim).map_err(map_sqlite))
            .await
    }

    async fn webhook_dead(
        &self,
        endpoint: Option<String>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<super::DeadRow>> {
        self.read(move |conn| outbox::dead(conn, endpoint.as_deref(), after, limit))
            .await
    }

    async fn webhook_redrive(&self, ids: Option<Vec<i64>>) -> Result<usize> {
        self.write(move |conn| outbox::redrive(conn, ids, now_millis()).map_err(map_sqlite))
            .await
    }

    async fn webhook_depth(&self) -> Result<(i64, Option<Millis>)> {
        self.read(outbox::depth).await
    }

    async fn set_profile(&self, user: UserId, change: ProfileChange) -> Result<User> {
        self.write(move |conn| profiles::set_profile(conn, user, &change))
            .await
    }

    async fn users_by_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<User>> {
        let prefix = prefix.to_string();
        self.read(move |conn| profiles::by_prefix(conn, &prefix, limit))
            .await
    }

    async fn contacts(&self, user: UserId, after: UserId, limit: usize) -> Result<Vec<User>> {
        self.read(move |conn| profiles::contacts(conn, user, after, limit))
            .await
    }

    async fn set_message_state(
        &self,
        conversation: ConversationId,
        seq: i64,
        change: StateChange,
    ) -> Result<Option<Message>> {
        self.write(move |conn| recall::set_state(conn, conversation, seq, change))
            .await
    }

    async fn hide_message(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: i64,
    ) -> Result<bool> {
        self.write(move |conn| recall::hide(conn, user, conversation, seq))
            .await
    }

    async fn hidden_seqs(
        &self,
        user: UserId,
        conversation: ConversationId,
        from: i64,
        to: i64,
    ) -> Result<Vec<i64>> {
        self.read(move |conn| recall::hidden_seqs(conn, user, conversation, from, to))
            .await
    }

    async fn healthy(&self) -> bool {
        self.appends.is_open()
            && self
                .read(|conn| conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0)))
                .await
                .is_ok()
    }

    async fn shutdown(&self) {
        self.close().await
    }
}

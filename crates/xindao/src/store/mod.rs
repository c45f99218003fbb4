//! The storage seam: one trait, implemented by the embedded SQLite store and by PostgreSQL (for clusters).
//!
//! The store is the source of truth for users, sessions, conversations, membership, messages and read state.
//! Each backend implements storage only; the rules (who may join, add, remove, leave; when a session slides)
//! live in [`crate::rules`], and the group-commit loop in front of appends in `group_commit.rs`, once for both.
//!
//! # Checks made inside the writing transaction, and why
//! A check read outside the write could be stale by the time the write commits (another request, or on
//! PostgreSQL another node, changing the same rows in between). These are therefore made inside the
//! transaction that writes, on facts read in it:
//! - **Membership at append**: the sender must be a member when the message takes its seq; checked in the
//!   batch's transaction (SQLite: the one writer connection; PostgreSQL: under the conversation's row lock), so
//!   a message is never stored after its sender left or was removed.
//!   The same statement refuses a member muted at the commit's time (server API), and lets the system account
//!   send into any conversation that is not archived (docs/decisions/server-api-checks-in-the-append.md).
//! - **Room rules at join, add, leave and remove** ([`crate::rules::may_join`], [`crate::rules::may_leave`]):
//!   the room's visibility and owner, the adder's membership and the added user's existence are read in the
//!   membership change's transaction (PostgreSQL: `FOR UPDATE` on the room), so two concurrent changes, e.g.
//!   an ownership hand-over and an add, cannot both pass on the same old facts.
//! - **Caps** ([`crate::rules::may_gain_membership`], [`crate::rules::may_create_room`]): the user's
//!   membership count and the owner's room count are read in the transaction that adds the membership or the
//!   room (PostgreSQL: under the user's row lock, `FOR UPDATE` on `users`, so that adds to different rooms on
//!   different nodes cannot both pass at cap - 1). Leaving is never capped.
//! - **Ownership hand-over** ([`crate::rules::ownership_passes`]): the heir is chosen in the transaction that
//!   removes the owner.
//! - Per-conversation seq (allocated with the insert), idempotency by (sender, cmid), read markers that only
//!   move forward: enforced by the same statements that write.
//! - **Recall and remove** ([`crate::rules::may_change_message`]): the changer's membership, the room's owner
//!   and the message's sender, time and state are read in the transaction that writes the tombstone
//!   (PostgreSQL: `FOR UPDATE` on the message row), so a recall and a remove of one message, or a recall racing
//!   the sender's removal from the room, cannot both pass on old facts. Hiding checks membership and that the
//!   seq names a message in the transaction that inserts the hidden mark.
//!
//! Session expiry ([`crate::rules::touch_session`]) is decided on a read and written without a transaction:
//! two racing extensions write nearly the same expiry, and the later one wins.

mod backend_errors;
mod commit_sink;
pub(crate) mod group_commit;
pub mod media;
pub(crate) mod migrate;
pub mod offline;
pub mod outbox;
pub mod postgres;
mod rows;
pub mod server_api;
pub mod sqlite;
pub mod wechat;

pub use commit_sink::{CommitSink, Committed};
pub use group_commit::GroupCommit;
pub use media::MediaStore;
pub use offline::{OfflineCandidate, OfflineStore, WindowClaim};
pub use outbox::{Claim, DeadRow, Outbox, OutboxEvent, OutboxRow, Retry, Settlement};
pub use server_api::ServerApiStore;
pub use wechat::WeChatStore;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{Config, StoreConfig};
use crate::error::Result;
use crate::model::*;
pub use crate::rules::{SessionExpiry, StateChange};

/// Opens the store `config.store` names; its writers hand each committed batch to `sink`.
pub async fn open(
    config: &Config,
    sink: CommitSink,
    outbox: Arc<Outbox>,
) -> Result<Arc<dyn Store>> {
    let caps = config.caps();
    let commit = GroupCommit {
        batch_max: config.commit_batch_max,
        linger: config.commit_linger(),
    };
    Ok(match &config.store {
        StoreConfig::Postgres { url } => Arc::new(
            postgres::PostgresStore::open_with_outbox(
                url,
                config.postgres_pool_size,
                commit,
                sink,
                outbox,
            )
            .await?
            .with_caps(caps),
        ),
        StoreConfig::Sqlite => Arc::new(
            sqlite::SqliteStore::open_with_outbox(
                &config.data_dir,
                sqlite::SqliteOptions {
                    synchronous: config.sqlite_synchronous,
                    commit,
                    max_db_mb: config.sqlite_max_db_mb,
                    cache_mb: config.sqlite_cache_mb,
                },
                sink,
                outbox,
            )
            .await?
            .with_caps(caps),
        ),
    })
}

/// A user found or created by a login.
#[derive(Debug, Clone)]
pub struct LoginIdentity {
    /// WeChat openid, or the development login's display name.
    pub external_id: ExternalId,
    /// WeChat unionid, when WeChat sends one.
    pub unionid: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ExternalId {
    WeChat {
        openid: String,
    },
    Dev {
        display_name: String,
    },
    /// A business backend's user (a JWT's `sub`), with the display name its token carries (updated when
    /// given; `default_name` on creation otherwise).
    Business {
        id: String,
        display_name: Option<String>,
        default_name: String,
    },
}

/// A session row looked up by token hash.
#[derive(Debug, Clone, Copy)]
pub struct SessionInfo {
    pub user_id: UserId,
    pub expires_at: Millis,
    pub expiry: SessionExpiry,
}

/// Persistent state of xindao. All methods are safe to call concurrently.
#[async_trait]
pub trait Store:
    MediaStore + OfflineStore + ServerApiStore + WeChatStore + Send + Sync + 'static
{
    /// Finds the user for a login identity, creating it on first login.
    async fn upsert_user(&self, identity: LoginIdentity) -> Result<User>;
    async fn user(&self, id: UserId) -> Result<Option<User>>;
    /// Users whose display name is exactly `display_name` (at most `limit`).
    async fn users_named(&self, display_name: &str, limit: usize) -> Result<Vec<User>>;

    async fn create_session(
        &self,
        token_hash: [u8; 32],
        user_id: UserId,
        expires_at: Millis,
        expiry: SessionExpiry,
    ) -> Result<()>;
    /// Returns the session if it exists and has not expired at `now`; extends a sliding one to `now + ttl`
    /// when the previous extension is older than a tenth of `ttl` (sliding expiry without a write per call).
    async fn touch_session(
        &self,
        token_hash: [u8; 32],
        now: Millis,
        ttl_ms: i64,
    ) -> Result<Option<SessionInfo>>;
    async fn revoke_session(&self, token_hash: [u8; 32]) -> Result<()>;
    /// Stores the connect ticket of a session, replacing the session's previous one.
    async fn create_ticket(
        &self,
        ticket_hash: [u8; 32],
        token_hash: [u8; 32],
        expires_at: Millis,
    ) -> Result<()>;
    /// Deletes a connect ticket and returns its session's token hash, if the ticket existed and had not
    /// expired at `now`: a ticket is redeemed once.
    async fn take_ticket(&self, ticket_hash: [u8; 32], now: Millis) -> Result<Option<[u8; 32]>>;
    /// Deletes up to `limit` sessions and up to `limit` tickets expired at `now`; returns how many in all.
    async fn delete_expired(&self, now: Millis, limit: usize) -> Result<usize>;

    /// The one direct conversation of the pair, created if needed (then the flag is true). Fails with
    /// `NotFound` for an unknown peer and `Conflict` for a pair of one user.
    async fn open_direct(&self, user: UserId, peer: UserId) -> Result<(ConversationId, bool)>;
    async fn create_room(
        &self,
        owner: UserId,
        name: &str,
        visibility: Visibility,
    ) -> Result<ConversationId>;
    /// Adds `user` to a room. `by` is `None` for self-join (public rooms only), or the member adding them.
    /// Returns false when the user already was a member.
    async fn join_room(
        &self,
        conversation: ConversationId,
        user: UserId,
        by: Option<UserId>,
    ) -> Result<bool>;
    /// Removes `user` from a room (`by` is `None` for leaving). Returns false when they were not a member.
    async fn leave_room(
        &self,
        conversation: ConversationId,
        user: UserId,
        by: Option<UserId>,
    ) -> Result<bool>;
    /// A page of the members of a conversation, longest-standing first, after `cursor`, at most `limit`.
    async fn members(
        &self,
        conversation: ConversationId,
        cursor: Option<MemberCursor>,
        limit: usize,
    ) -> Result<Vec<Member>>;
    /// How many members the conversation has.
    async fn member_count(&self, conversation: ConversationId) -> Result<i64>;
    async fn is_member(&self, conversation: ConversationId, user: UserId) -> Result<bool>;
    /// The conversation as `user` sees it; `Forbidden` when not a member, `NotFound` when absent.
    async fn conversation_for(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<Conversation>;
    /// A page of the conversations of `user`, most recent activity first, after `cursor` (`None`: from the
    /// most recent), at most `limit`.
    async fn conversations_page(
        &self,
        user: UserId,
        cursor: Option<ActivityCursor>,
        limit: usize,
    ) -> Result<Vec<Conversation>>;
    /// The id and last seq of the conversations of `user` with `after < id <= until` (`None`: no upper bound),
    /// ascending by id, at most `limit`: what `sync` scans, a slice at a time.
    async fn sync_scan(
        &self,
        user: UserId,
        after: ConversationId,
        until: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<(ConversationId, i64)>>;
    /// Those of `others` who share at least one conversation with `user` (`user` too, if listed).
    async fn sharing_with(&self, user: UserId, others: &[UserId]) -> Result<Vec<UserId>>;
    /// The direct conversation of the pair, if it exists.
    async fn direct_between(&self, user: UserId, peer: UserId) -> Result<Option<ConversationId>>;
    /// What a new connection needs, in one read: the user (`None` if unknown) and the ids of all their
    /// conversations (to route pushes).
    async fn connection_state(&self, user: UserId) -> Result<Option<(User, Vec<ConversationId>)>>;
    async fn public_rooms(&self, limit: usize) -> Result<Vec<PublicRoom>>;

    /// Commits a message with the next seq of its conversation, or returns the sender's earlier message with
    /// the same cmid. `Forbidden` when the sender is not a member. Only returns after the commit, and after
    /// the new message was handed to the [`CommitSink`] with `origin` (the sending connection, 0 for none).
    async fn append(&self, message: NewMessage, origin: u64) -> Result<Appended>;
    /// Messages of a conversation in ascending seq order; only committed ones.
    async fn history(
        &self,
        conversation: ConversationId,
        range: Range,
        limit: usize,
    ) -> Result<Page>;
    /// Moves the read marker of `user` forward to `seq` (capped at last_seq); returns the marker after the call.
    async fn mark_read(&self, conversation: ConversationId, user: UserId, seq: i64) -> Result<i64>;

    /// Writes webhook events in a transaction of their own (events that commit nothing else: a user's first
    /// connection, their last one).
    async fn webhook_enqueue(&self, events: Vec<OutboxEvent>) -> Result<()>;
    /// Records what the delivery worker did with its claimed rows (deleted, given back, retried later,
    /// dead-lettered) and then makes its next claim (see [`Claim`]), in one transaction; the claimed rows in
    /// id order. A claim with `limit` 0 only settles.
    async fn webhook_settle_and_claim(
        &self,
        settled: Settlement,
        claim: Claim,
    ) -> Result<Vec<OutboxRow>>;
    /// A page of the dead-letter list, oldest first: ids above `after`, of `endpoint` when given, at most
    /// `limit`.
    async fn webhook_dead(
        &self,
        endpoint: Option<String>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DeadRow>>;
    /// Puts dead deliveries (all, or `ids`) back in the outbox; returns how many.
    async fn webhook_redrive(&self, ids: Option<Vec<i64>>) -> Result<usize>;
    /// Rows in the outbox, and the creation time of the oldest.
    async fn webhook_depth(&self) -> Result<(i64, Option<Millis>)>;
    // ---- Profiles, search, contacts (store/*/profiles.rs) ----

    /// Changes `user`'s profile (the fields already validated); returns the user after the change.
    /// `NotFound` for an unknown user. Also what the server API calls to set a name or an avatar.
    async fn set_profile(&self, user: UserId, change: ProfileChange) -> Result<User>;
    /// Users whose display name starts with `prefix` (case-insensitive for ASCII), by name then id, at most
    /// `limit`: a range scan of a name index, whatever the number of users.
    async fn users_by_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<User>>;
    /// The users who share at least one conversation with `user` (not `user`), ascending by id, with an id
    /// above `after`, at most `limit`. Work per call: one index seek per conversation of `user` reading at most
    /// `limit` members each (memberships are capped by `max_memberships_per_user`).
    async fn contacts(&self, user: UserId, after: UserId, limit: usize) -> Result<Vec<User>>;

    // ---- Recall, remove, hide (store/*/recall.rs) ----

    /// Makes a message a tombstone (its content erased) if [`crate::rules::may_change_message`] allows it.
    /// Returns the tombstone, or `None` when the message already was one (nothing changed). Also what the
    /// server API calls to remove a message ([`StateChange::RemoveByServer`]).
    async fn set_message_state(
        &self,
        conversation: ConversationId,
        seq: i64,
        change: StateChange,
    ) -> Result<Option<Message>>;
    /// Hides a message from `user` alone (delete-for-me, all their devices). `Forbidden` when not a member,
    /// `NotFound` when the seq names no message. Returns false when it was hidden already.
    async fn hide_message(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: i64,
    ) -> Result<bool>;
    /// The seqs `user` hid in a conversation within `from..=to`, ascending.
    async fn hidden_seqs(
        &self,
        user: UserId,
        conversation: ConversationId,
        from: i64,
        to: i64,
    ) -> Result<Vec<i64>>;

    /// [`Store::history`] as `viewer` sees it: the messages they hid are their tombstones.
    async fn history_for(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        range: Range,
        limit: usize,
    ) -> Result<Page> {
        let mut page = self.history(conversation, range, limit).await?;
        if let (Some(first), Some(last)) = (page.messages.first(), page.messages.last()) {
            let hidden = self
                .hidden_seqs(viewer, conversation, first.seq, last.seq)
                .await?;
            if !hidden.is_empty() {
                for message in &mut page.messages {
                    if hidden.binary_search(&message.seq).is_ok() {
                        message.erase(MessageState::Hidden);
                    }
                }
            }
        }
        Ok(page)
    }

    /// Whether the store answers (for `/healthz`).
    async fn healthy(&self) -> bool;
    /// Commits everything already accepted and stops taking writes.
    async fn shutdown(&self);
}

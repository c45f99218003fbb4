//! The embedded default store: SQLite in WAL mode, one writer connection, a small pool of readers.
//!
//! Message appends go through the group-commit thread (`writer.rs`); other writes (logins, rooms, read
//! markers) take the writer connection briefly on the blocking pool. Reads use separate connections, which WAL
//! lets run beside the writer and which only ever see committed transactions. WAL checkpoints run on a thread
//! of their own (`checkpoint.rs`), so no commit waits for the disk.

mod checkpoint;
mod rooms;
mod rows;
mod schema;
mod writer;

use rows::*;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::append_queue::AppendQueue;
use super::{CommitSink, ExternalId, GroupCommit, LoginIdentity, SessionInfo, Store};
use crate::config::SqliteSync;
use crate::error::{Error, Result};
use crate::model::*;

const READERS: usize = 4;
const APPEND_QUEUE: usize = 16 * 1024;
/// Bytes the WAL file is cut back to when the log starts over.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

pub(crate) const MESSAGE_COLUMNS: &str =
    "id, conversation_id, seq, sender_id, cmid, kind, content, created_at";

/// How to open the SQLite store.
#[derive(Debug, Clone, Copy)]
pub struct SqliteOptions {
    pub synchronous: SqliteSync,
    /// How message appends are grouped into transactions.
    pub commit: GroupCommit,
    /// Database size quota in MiB; writes beyond it fail like a full disk.
    pub max_db_mb: Option<u64>,
    /// Page cache of the writing connection in MiB.
    pub cache_mb: u64,
}

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
}

/// Maps SQLite failures: a full disk or an I/O problem means "cannot take writes now", anything else is a bug.
pub(crate) fn map_sqlite(error: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::*;
    match error.sqlite_error_code() {
        Some(
            DiskFull | SystemIoFailure | ReadOnly | CannotOpen | DatabaseBusy | DatabaseLocked,
        ) => Error::Unavailable(format!("storage: {error}")),
        _ => Error::Internal(format!("sqlite: {error}")),
    }
}

pub(crate) fn read_message(row: &Row) -> rusqlite::Result<Message> {
    let kind: String = row.get(5)?;
    let raw: String = row.get(6)?;
    let kind = MessageKind::from_stored(&kind);
    Ok(Message {
        id: row.get(0)?,
        conversation_id: row.get(1)?,
        seq: row.get(2)?,
        sender_id: row.get(3)?,
        cmid: row.get(4)?,
        kind,
        content: serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null),
        ts: row.get(7)?,
    })
}

fn open_connection(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    configure(Connection::open_with_flags(path, flags)?)
}

/// The writing connection, through the VFS that writes a commit's WAL frames at once (`sqlite-wal-batch`,
/// docs/decisions/sqlite-wal-batch.md) where it can be used.
fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    if !sqlite_wal_batch::register() {
        tracing::warn!("sqlite: batched WAL writes unavailable, using the default VFS");
        return open_connection(path, OpenFlags::default());
    }
    configure(Connection::open_with_flags_and_vfs(
        path,
        OpenFlags::default(),
        sqlite_wal_batch::NAME,
    )?)
}

fn configure(conn: Connection) -> rusqlite::Result<Connection> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// A permit of `slots`, for a blocking call to hold until its work is done.
async fn take_slot(slots: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit> {
    slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::Unavailable("store closed".into()))
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/xindao.db`, migrates it and starts the group-commit thread.
    pub fn open(data_dir: &Path, options: SqliteOptions, sink: CommitSink) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            Error::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("xindao.db");
        let mut writer = open_writer(&path).map_err(map_sqlite)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(map_sqlite)?;
        // A load burst can outrun the checkpointer and grow the WAL; the file shrinks back when it restarts.
        writer
            .pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(map_sqlite)?;
        let sync_mode = match options.synchronous {
            SqliteSync::Normal => "NORMAL",
            SqliteSync::Full => "FULL",
        };
        writer
            .pragma_update(None, "synchronous", sync_mode)
            .map_err(map_sqlite)?;
        schema::migrate(&mut writer).map_err(map_sqlite)?;
        // Negative: a size in KiB rather than in pages. SQLite allocates the cache as it fills.
        writer
            .pragma_update(None, "cache_size", -((options.cache_mb * 1024) as i64))
            .map_err(map_sqlite)?;
        checkpoint::take_over(&writer);
        if let Some(mb) = options.max_db_mb {
            let page_size: u64 = writer
                .query_row("PRAGMA page_size", [], |row| row.get(0))
                .map_err(map_sqlite)?;
            let pages = (mb * 1024 * 1024 / page_size.max(512)).max(1);
            writer
                .pragma_update(None, "max_page_count", pages)
                .map_err(map_sqlite)?;
        }
        let readers = (0..READERS)
            .map(|_| {
                open_connection(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map(Mutex::new)
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(map_sqlite)?
            .into();
        let writer = Arc::new(Mutex::new(writer));
        let (appends, rx) = AppendQueue::new(APPEND_QUEUE);
        let (nudge, checkpointer) = checkpoint::start(&path, writer.clone())?;
        let thread_writer = writer.clone();
        let handle = std::thread::Builder::new()
            .name("xindao-commit".into())
            .spawn({
                let nudge = nudge.clone();
                move || writer::run(thread_writer, rx, options.commit, sink, nudge)
            })
            .map_err(|e| Error::Internal(format!("cannot start commit thread: {e}")))?;
        tracing::info!(path = %path.display(), synchronous = sync_mode, "opened SQLite store");
        Ok(SqliteStore {
            writer,
            readers,
            next_reader: AtomicUsize::new(0),
            read_slots: Arc::new(Semaphore::new(READERS)),
            write_slot: Arc::new(Semaphore::new(1)),
            appends,
            checkpoint: Mutex::new(Some(nudge)),
            threads: Mutex::new(vec![handle, checkpointer]),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let slot = take_slot(&self.read_slots).await?;
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            // A quick read may hold one reader on an async thread for a moment: take whichever is free.
            match readers.iter().find_map(|reader| reader.try_lock()) {
                Some(reader) => f(&reader),
                None => f(&readers[index].lock()),
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("store task failed: {e}")))?
        .map_err(map_sqlite)
    }

    /// For point lookups (microseconds): runs on the calling thread when a reader is free, saving the two
    /// thread hand-offs of the blocking pool on hot paths (every upgrade, every `to_user` send).
    async fn read_quick<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        if let Some(reader) = self.readers.iter().find_map(|reader| reader.try_lock()) {
            return f(&reader).map_err(map_sqlite);
        }
        self.read(f).await
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let slot = take_slot(&self.write_slot).await?;
        let writer = self.writer.clone();
        let checkpoint = self.checkpoint.lock().clone();
        tokio::task::spawn_blocking(move || {
            // Held until the work is done, even if the caller stops waiting for it.
            let _slot = slot;
            let mut writer = writer.lock();
            let outcome = f(&mut writer);
            if let Some(checkpoint) = checkpoint {
                checkpoint.after_write(&writer);
            }
            outcome
        })
        .await
        .map_err(|e| Error::Internal(format!("store task failed: {e}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_user(&self, identity: LoginIdentity) -> Result<User> {
        self.write(move |conn| {
            let now = now_millis();
            let row = match &identity.external_id {
                ExternalId::WeChat { openid } => conn.query_row(
                    "INSERT INTO users (openid, unionid, session_key, display_name, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (openid) DO UPDATE SET session_key = excluded.session_key,
                        unionid = COALESCE(excluded.unionid, users.unionid)
                     RETURNING id, display_name",
                    params![
                        openid,
                        identity.unionid,
                        identity.session_key,
                        display_name_for_openid(openid),
                        now
                    ],
                    |row| {
                        Ok(User {
                            id: row.get(0)?,
                            display_name: row.get(1)?,
                        })
                    },
                ),
                ExternalId::Dev { display_name } => conn.query_row(
                    "INSERT INTO users (dev_name, display_name, created_at) VALUES (?1, ?1, ?2)
                     ON CONFLICT (dev_name) DO UPDATE SET dev_name = excluded.dev_name
                     RETURNING id, display_name",
                    params![display_name, now],
                    |row| {
                        Ok(User {
                            id: row.get(0)?,
                            display_name: row.get(1)?,
                        })
                    },
                ),
            };
            row.map_err(map_sqlite)
        })
        .await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        self.read_quick(move |conn| load_user(conn, id)).await
    }

    async fn users_named(&self, display_name: &str, limit: usize) -> Result<Vec<User>> {
        let name = display_name.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, display_name FROM users WHERE display_name = ?1 ORDER BY id LIMIT ?2",
            )?
            .query_map(params![name, limit as i64], |row| {
                Ok(User {
                    id: row.get(0)?,
                    display_name: row.get(1)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn create_session(
        &self,
        token_hash: [u8; 32],
        user_id: UserId,
        expires_at: Millis,
    ) -> Result<()> {
        self.write(move |conn| {
            let now = now_millis();
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, extended_at, expires_at)
                 VALUES (?1, ?2, ?3, ?3, ?4)",
                params![&token_hash[..], user_id, now, expires_at],
            )
            .map(|_| ())
            .map_err(map_sqlite)
        })
        .await
    }

    async fn touch_session(
        &self,
        token_hash: [u8; 32],
        now: Millis,
        ttl_ms: i64,
    ) -> Result<Option<SessionInfo>> {
        let found = self
            .read_quick(move |conn| {
                conn.prepare_cached(
                    "SELECT user_id, extended_at, expires_at FROM sessions WHERE token_hash = ?1",
                )?
                .query_row([&token_hash[..]], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .optional()
            })
            .await?;
        let Some((user_id, extended_at, expires_at)) = found else {
            return Ok(None);
        };
        if expires_at <= now {
            return Ok(None);
        }
        if now - extended_at < ttl_ms / 10 {
            return Ok(Some(SessionInfo {
                user_id,
                expires_at,
            }));
        }
        let new_expiry = now + ttl_ms;
        self.write(move |conn| {
            conn.execute(
                "UPDATE sessions SET extended_at = ?2, expires_at = ?3 WHERE token_hash = ?1",
                params![&token_hash[..], now, new_expiry],
            )
            .map_err(map_sqlite)
        })
        .await?;
        Ok(Some(SessionInfo {
            user_id,
            expires_at: new_expiry,
        }))
    }

    async fn revoke_session(&self, token_hash: [u8; 32]) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                [&token_hash[..]],
            )
            .map(|_| ())
            .map_err(map_sqlite)
        })
        .await
    }

    async fn open_direct(&self, user: UserId, peer: UserId) -> Result<(ConversationId, bool)> {
        if user == peer {
            return Err(Error::Conflict(
                "a direct conversation needs two different users",
            ));
        }
        let (lo, hi) = (user.min(peer), user.max(peer));
        // Sending with `to_user` opens the conversation on every send: answer that from a reader.
        let existing = self
            .read_quick(move |conn| {
                conn.prepare_cached(
                    "SELECT id FROM conversations WHERE direct_lo = ?1 AND direct_hi = ?2",
                )?
                .query_row(params![lo, hi], |row| row.get(0))
                .optional()
            })
            .await?;
        if let Some(id) = existing {
            return Ok((id, false));
        }
        self.write(move |conn| {
            if load_user(conn, peer).map_err(map_sqlite)?.is_none() {
                return Err(Error::NotFound("no such user"));
            }
            let tx = conn.transaction().map_err(map_sqlite)?;
            let existing: Option<i64> = tx
                .query_row(
                    "SELECT id FROM conversations WHERE direct_lo = ?1 AND direct_hi = ?2",
                    params![lo, hi],
                    |row| row.get(0),
                )
                .optional()
                .map_err(map_sqlite)?;
            if let Some(id) = existing {
                return Ok((id, false));
            }
            let now = now_millis();
            tx.execute(
                "INSERT INTO conversations (kind, direct_lo, direct_hi, last_ts, created_at)
                 VALUES ('direct', ?1, ?2, ?3, ?3)",
                params![lo, hi, now],
            )
            .map_err(map_sqlite)?;
            let id = tx.last_insert_rowid();
            for member in [lo, hi] {
                tx.execute(
                    "INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES (?1, ?2, 'member', ?3)",
                    params![id, member, now],
                )
                .map_err(map_sqlite)?;
            }
            tx.commit().map_err(map_sqlite)?;
            Ok((id, true))
        })
        .await
    }

    async fn create_room(
        &self,
        owner: UserId,
        name: &str,
        visibility: Visibility,
    ) -> Result<ConversationId> {
        let name = name.to_string();
        self.write(move |conn| rooms::create_room(conn, owner, &name, visibility))
            .await
    }

    async fn join_room(
        &self,
        conversation: ConversationId,
        user: UserId,
        by: Option<UserId>,
    ) -> Result<bool> {
        self.write(move |conn| rooms::join_room(conn, conversation, user, by))
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

    async fn members(&self, conversation: ConversationId) -> Result<Vec<Member>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT u.id, u.display_name, m.role, m.read_seq FROM members m JOIN users u ON u.id = m.user_id
                 WHERE m.conversation_id = ?1 ORDER BY m.joined_at, u.id",
            )?;
            let rows = stmt.query_map([conversation], |row| {
                let role: String = row.get(2)?;
                Ok(Member {
                    user: User { id: row.get(0)?, display_name: row.get(1)? },
                    role: if role == "owner" { Role::Owner } else { Role::Member },
                    read_seq: row.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn is_member(&self, conversation: ConversationId, user: UserId) -> Result<bool> {
        self.read_quick(move |conn| {
            conn.prepare_cached(
                "SELECT 1 FROM members WHERE conversation_id = ?1 AND user_id = ?2",
            )?
            .exists(params![conversation, user])
        })
        .await
    }

    async fn conversation_for(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<Conversation> {
        let found = self
            .read(move |conn| {
                let row = conn
                    .prepare_cached(&format!(
                        "{CONVERSATION_SELECT} WHERE m.user_id = ?1 AND c.id = ?2"
                    ))?
                    .query_row(params![user, conversation], conversation_row)
                    .optional()?;
                match row {
                    Some(row) => complete_conversation(conn, user, row).map(Some),
                    None => Ok(None),
                }
            })
            .await?;
        match found {
            Some(conversation) => Ok(conversation),
            None if self
                .read(move |conn| {
                    conn.prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")?
                        .exists([conversation])
                })
                .await? =>
            {
                Err(Error::Forbidden(
                    "you are not a member of this conversation",
                ))
            }
            None => Err(Error::NotFound("no such conversation")),
        }
    }

    async fn conversations_of(&self, user: UserId) -> Result<Vec<Conversation>> {
        self.read(move |conn| {
            let rows: Vec<_> = conn
                .prepare_cached(&format!(
                    "{CONVERSATION_SELECT} WHERE m.user_id = ?1 ORDER BY c.last_ts DESC, c.id DESC"
                ))?
                .query_map([user], conversation_row)?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter()
                .map(|row| complete_conversation(conn, user, row))
                .collect()
        })
        .await
    }

    async fn connection_state(&self, user: UserId) -> Result<Option<(User, Vec<ConversationId>)>> {
        self.read_quick(move |conn| {
            let Some(found) = load_user(conn, user)? else {
                return Ok(None);
            };
            let conversations = conn
                .prepare_cached("SELECT conversation_id FROM members WHERE user_id = ?1")?
                .query_map([user], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some((found, conversations)))
        })
        .await
    }

    async fn public_rooms(&self, limit: usize) -> Result<Vec<PublicRoom>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT c.id, c.name, (SELECT COUNT(*) FROM members m WHERE m.conversation_id = c.id)
                 FROM conversations c WHERE c.kind = 'room' AND c.visibility = 'public'
                 ORDER BY c.last_ts DESC LIMIT ?1",
            )?
            .query_map([limit as i64], |row| {
                Ok(PublicRoom { id: row.get(0)?, name: row.get(1)?, members: row.get(2)? })
            })?
            .collect()
        })
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
        self.read(move |conn| {
            let fetch = limit as i64 + 1;
            let (sql, bound) = match range {
                Range::Latest => ("seq > ?2 ORDER BY seq DESC", 0),
                Range::Before(seq) => ("seq < ?2 ORDER BY seq DESC", seq),
                Range::After(seq) => ("seq > ?2 ORDER BY seq ASC", seq),
            };
            let mut messages: Vec<Message> = conn
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND {sql} LIMIT ?3"
                ))?
                .query_map(params![conversation, bound, fetch], read_message)?
                .collect::<rusqlite::Result<_>>()?;
            let has_more = messages.len() > limit;
            messages.truncate(limit);
            if !matches!(range, Range::After(_)) {
                messages.reverse();
            }
            Ok(Page { messages, has_more })
        })
        .await
    }

    async fn mark_read(&self, conversation: ConversationId, user: UserId, seq: i64) -> Result<i64> {
        self.write(move |conn| {
            conn.query_row(
                "UPDATE members SET read_seq = MAX(read_seq,
                    MIN(?3, (SELECT last_seq FROM conversations WHERE id = ?1)))
                 WHERE conversation_id = ?1 AND user_id = ?2 RETURNING read_seq",
                params![conversation, user, seq],
                |row| row.get(0),
            )
            .optional()
            .map_err(map_sqlite)?
            .ok_or(Error::Forbidden(
                "you are not a member of this conversation",
            ))
        })
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
        // Dropping the last sender lets the commit thread finish the jobs it already has, then exit; the
        // checkpointer follows it.
        self.appends.close();
        drop(self.checkpoint.lock().take());
        let threads = std::mem::take(&mut *self.threads.lock());
        for handle in threads {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        let checkpoint = self
            .write(|conn| {
                conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                    .map_err(map_sqlite)
            })
            .await;
        match checkpoint {
            Ok(()) => tracing::info!("SQLite store closed cleanly"),
            Err(error) => {
                tracing::warn!(%error, "WAL checkpoint at shutdown failed; the WAL stays valid")
            }
        }
    }
}

//! The PostgreSQL store, for several xindao nodes sharing one database (`store = "postgres://..."`).
//!
//! Same semantics as the SQLite store. Message appends go through up to four group-commit tasks per node
//! (`writer.rs`), each owning a share of the conversations; every other call takes a pooled connection.
//! When the database cannot be reached, calls fail with `unavailable` (nothing was committed) and succeed
//! again once it is back.

mod rooms;
mod rows;
mod schema;
mod tls;
mod writer;

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use parking_lot::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use rows::{conversation_from_row, display_name_for_openid, user_from_row, CONVERSATION_SELECT};
pub(crate) use rows::{map_pg, message_from_row, MESSAGE_COLUMNS};

use super::append_queue::AppendQueue;
use super::{CommitHook, ExternalId, GroupCommit, LoginIdentity, SessionInfo, Store};
use crate::error::{Error, Result};
use crate::model::*;

const APPEND_QUEUE: usize = 16 * 1024;
/// Group-commit writers per node, each with its own connection and its share of the conversations: one
/// PostgreSQL backend runs a batch's statements one after another on one core, so a single writer caps a
/// node's appends however many cores the database has. Conversations never share a writer's batch with
/// another writer, so their row locks do not contend within a node.
const WRITERS_MAX: usize = 4;
/// Pool connections per writer: the rest of the pool serves logins, reads and room changes.
const POOL_PER_WRITER: usize = 4;
/// How long a call waits for a connection (or to open one) before answering `unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// PostgreSQL implementation of [`Store`].
pub struct PostgresStore {
    pool: Pool,
    appends: AppendQueue,
    writer_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl PostgresStore {
    /// Connects to `url`, runs the embedded migrations and starts the group-commit task.
    pub async fn open(
        url: &str,
        pool_size: usize,
        commit: GroupCommit,
        hook: CommitHook,
    ) -> Result<Self> {
        let tls::Target {
            config: mut pg,
            tls,
        } = tls::target(url)?;
        pg.connect_timeout(CONNECT_TIMEOUT);
        let manager_config = ManagerConfig {
            // Verified: a connection the server closed is detected before it is handed out.
            recycling_method: RecyclingMethod::Verified,
        };
        let manager = match tls {
            Some(tls) => Manager::from_config(pg, tls, manager_config),
            None => Manager::from_config(pg, NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| Error::Internal(format!("postgres pool: {e}")))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| Error::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        schema::migrate(&mut client).await.map_err(map_pg)?;
        drop(client);
        let writers = (pool_size / POOL_PER_WRITER).clamp(1, WRITERS_MAX);
        let (appends, receivers) = AppendQueue::sharded(APPEND_QUEUE, writers);
        let tasks = receivers
            .into_iter()
            .map(|rx| tokio::spawn(writer::run(pool.clone(), rx, commit, hook.clone())))
            .collect();
        tracing::info!(writers, "opened PostgreSQL store");
        Ok(PostgresStore {
            pool,
            appends,
            writer_tasks: Mutex::new(tasks),
        })
    }

    async fn client(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| Error::Unavailable(format!("postgres: {e}")))
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(map_pg)?;
        client.query(&statement, params).await.map_err(map_pg)
    }

    async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn upsert_user(&self, identity: LoginIdentity) -> Result<User> {
        let now = now_millis();
        let row = match &identity.external_id {
            ExternalId::WeChat { openid } => {
                self.query_opt(
                    "INSERT INTO users (openid, unionid, session_key, display_name, created_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (openid) DO UPDATE SET session_key = excluded.session_key,
                        unionid = COALESCE(excluded.unionid, users.unionid)
                     RETURNING id, display_name",
                    &[
                        openid,
                        &identity.unionid,
                        &identity.session_key,
                        &display_name_for_openid(openid),
                        &now,
                    ],
                )
                .await?
            }
            ExternalId::Dev { display_name } => {
                self.query_opt(
                    "INSERT INTO users (dev_name, display_name, created_at) VALUES ($1, $1, $2)
                     ON CONFLICT (dev_name) DO UPDATE SET dev_name = excluded.dev_name
                     RETURNING id, display_name",
                    &[display_name, &now],
                )
                .await?
            }
        };
        row.map(|row| user_from_row(&row))
            .ok_or_else(|| Error::Internal("upsert returned no row".into()))
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        let row = self
            .query_opt("SELECT id, display_name FROM users WHERE id = $1", &[&id])
            .await?;
        Ok(row.as_ref().map(user_from_row))
    }

    async fn users_named(&self, display_name: &str, limit: usize) -> Result<Vec<User>> {
        let rows = self
            .query(
                "SELECT id, display_name FROM users WHERE display_name = $1 ORDER BY id LIMIT $2",
                &[&display_name, &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(user_from_row).collect())
    }

    async fn create_session(
        &self,
        token_hash: [u8; 32],
        user_id: UserId,
        expires_at: Millis,
    ) -> Result<()> {
        let now = now_millis();
        self.query(
            "INSERT INTO sessions (token_hash, user_id, created_at, extended_at, expires_at)
             VALUES ($1, $2, $3, $3, $4)",
            &[&&token_hash[..], &user_id, &now, &expires_at],
        )
        .await
        .map(|_| ())
    }

    async fn touch_session(
        &self,
        token_hash: [u8; 32],
        now: Millis,
        ttl_ms: i64,
    ) -> Result<Option<SessionInfo>> {
        let Some(row) = self
            .query_opt(
                "SELECT user_id, extended_at, expires_at FROM sessions WHERE token_hash = $1",
                &[&&token_hash[..]],
            )
            .await?
        else {
            return Ok(None);
        };
        let (user_id, extended_at, expires_at): (i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2));
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
        self.query(
            "UPDATE sessions SET extended_at = $2, expires_at = $3 WHERE token_hash = $1",
            &[&&token_hash[..], &now, &new_expiry],
        )
        .await?;
        Ok(Some(SessionInfo {
            user_id,
            expires_at: new_expiry,
        }))
    }

    async fn revoke_session(&self, token_hash: [u8; 32]) -> Result<()> {
        self.query(
            "DELETE FROM sessions WHERE token_hash = $1",
            &[&&token_hash[..]],
        )
        .await
        .map(|_| ())
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

    async fn members(&self, conversation: ConversationId) -> Result<Vec<Member>> {
        let rows = self
            .query(
                "SELECT u.id, u.display_name, m.role, m.read_seq FROM members m JOIN users u ON u.id = m.user_id
                 WHERE m.conversation_id = $1 ORDER BY m.joined_at, u.id",
                &[&conversation],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let role: String = row.get(2);
                Member {
                    user: user_from_row(row),
                    role: if role == "owner" {
                        Role::Owner
                    } else {
                        Role::Member
                    },
                    read_seq: row.get(3),
                }
            })
            .collect())
    }

    async fn is_member(&self, conversation: ConversationId, user: UserId) -> Result<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2",
                &[&conversation, &user],
            )
            .await?
            .is_some())
    }

    async fn conversation_for(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<Conversation> {
        let sql = format!("{CONVERSATION_SELECT} WHERE m.user_id = $1 AND c.id = $2");
        if let Some(row) = self.query_opt(&sql, &[&user, &conversation]).await? {
            return Ok(conversation_from_row(&row));
        }
        let exists = self
            .query_opt(
                "SELECT 1 FROM conversations WHERE id = $1",
                &[&conversation],
            )
            .await?
            .is_some();
        if exists {
            Err(Error::Forbidden(
                "you are not a member of this conversation",
            ))
        } else {
            Err(Error::NotFound("no such conversation"))
        }
    }

    async fn conversations_of(&self, user: UserId) -> Result<Vec<Conversation>> {
        let sql = format!(
            "{CONVERSATION_SELECT} WHERE m.user_id = $1 ORDER BY c.last_ts DESC, c.id DESC"
        );
        let rows = self.query(&sql, &[&user]).await?;
        Ok(rows.iter().map(conversation_from_row).collect())
    }

    async fn connection_state(&self, user: UserId) -> Result<Option<(User, Vec<ConversationId>)>> {
        // One round trip: a connect is latency the user waits for.
        let row = self
            .query_opt(
                "SELECT u.id, u.display_name,
                        COALESCE(array_agg(m.conversation_id) FILTER (WHERE m.conversation_id IS NOT NULL), '{}')
                 FROM users u LEFT JOIN members m ON m.user_id = u.id
                 WHERE u.id = $1 GROUP BY u.id, u.display_name",
                &[&user],
            )
            .await?;
        Ok(row.map(|row| (user_from_row(&row), row.get(2))))
    }

    async fn public_rooms(&self, limit: usize) -> Result<Vec<PublicRoom>> {
        let rows = self
            .query(
                "SELECT c.id, c.name, (SELECT COUNT(*) FROM members m WHERE m.conversation_id = c.id)
                 FROM conversations c WHERE c.kind = 'room' AND c.visibility = 'public'
                 ORDER BY c.last_ts DESC LIMIT $1",
                &[&(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| PublicRoom {
                id: row.get(0),
                name: row.get(1),
                members: row.get(2),
            })
            .collect())
    }

    async fn append(&self, message: NewMessage) -> Result<Appended> {
        self.appends.append(message).await
    }

    async fn history(
        &self,
        conversation: ConversationId,
        range: Range,
        limit: usize,
    ) -> Result<Page> {
        let fetch = limit as i64 + 1;
        let (sql, bound) = match range {
            Range::Latest => ("seq > $2 ORDER BY seq DESC", 0),
            Range::Before(seq) => ("seq < $2 ORDER BY seq DESC", seq),
            Range::After(seq) => ("seq > $2 ORDER BY seq ASC", seq),
        };
        let rows = self
            .query(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND {sql} LIMIT $3"
                ),
                &[&conversation, &bound, &fetch],
            )
            .await?;
        let mut messages: Vec<Message> = rows.iter().map(message_from_row).collect();
        let has_more = messages.len() > limit;
        messages.truncate(limit);
        if !matches!(range, Range::After(_)) {
            messages.reverse();
        }
        Ok(Page { messages, has_more })
    }

    async fn mark_read(&self, conversation: ConversationId, user: UserId, seq: i64) -> Result<i64> {
        self.query_opt(
            "UPDATE members SET read_seq = GREATEST(read_seq,
                LEAST($3, (SELECT last_seq FROM conversations WHERE id = $1)))
             WHERE conversation_id = $1 AND user_id = $2 RETURNING read_seq",
            &[&conversation, &user, &seq],
        )
        .await?
        .map(|row| row.get(0))
        .ok_or(Error::Forbidden(
            "you are not a member of this conversation",
        ))
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

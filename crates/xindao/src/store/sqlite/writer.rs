//! The SQLite side of group commit: a dedicated thread owns message appends and runs the shared loop
//! ([`group_commit::run`]) on a current-thread runtime, committing each batch in one `IMMEDIATE` transaction
//! on the writer connection. This thread is SQLite's only writer of messages, so the seq it reads cannot race
//! another append, and membership is checked by the same statement that takes the seq.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Transaction};
use tokio::sync::mpsc;

use super::checkpoint::Nudge;
use super::map_sqlite;
use super::rows::{member_exists, message_by_cmid};
use crate::error::{Error, Result};
use crate::model::{now_millis, NewMessage};
use crate::rules;
use crate::store::group_commit::{self, AppendJob, CommitBatch, GroupCommit, Stored};
use crate::store::{CommitSink, Outbox};

/// Starts the commit thread; it ends once every sender of `jobs` is gone and what it had is committed.
pub(super) fn start(
    conn: Arc<Mutex<Connection>>,
    jobs: mpsc::Receiver<AppendJob>,
    commit: GroupCommit,
    sink: CommitSink,
    checkpoint: Nudge,
    outbox: Arc<Outbox>,
) -> Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start commit runtime: {e}")))?;
    std::thread::Builder::new()
        .name("xindao-commit".into())
        .spawn(move || {
            let backend = SqliteBatch {
                conn,
                checkpoint,
                outbox,
            };
            runtime.block_on(group_commit::run(backend, jobs, commit, sink));
        })
        .map_err(|e| Error::Internal(format!("cannot start commit thread: {e}")))
}

struct SqliteBatch {
    conn: Arc<Mutex<Connection>>,
    checkpoint: Nudge,
    outbox: Arc<Outbox>,
}

impl CommitBatch for SqliteBatch {
    /// Runs on this thread, without yielding: there is nothing else for it to do meanwhile.
    fn commit(
        &mut self,
        batch: &[AppendJob],
    ) -> impl Future<Output = Result<Vec<Result<Stored>>>> + Send {
        let outcome = {
            let mut conn = self.conn.lock();
            let outcome = commit_batch(&mut conn, batch, &self.outbox);
            self.checkpoint.after_write(&conn);
            outcome
        };
        // Nothing of a failed batch was committed: every appender may retry.
        std::future::ready(outcome.map_err(|error| match error {
            Error::Unavailable(detail) => Error::Unavailable(detail),
            other => Error::Unavailable(other.to_string()),
        }))
    }

    /// The thread is this writer's alone: sleeping it is exact to the microsecond, unlike tokio's timer.
    fn linger(&mut self, linger: Duration) -> impl Future<Output = ()> + Send {
        std::thread::sleep(linger);
        std::future::ready(())
    }
}

/// Runs every append of the batch in one transaction. Per-message refusals (not a member) do not abort the
/// batch; a database failure aborts all of it, so nothing is acked that was not committed.
fn commit_batch(
    conn: &mut Connection,
    batch: &[AppendJob],
    outbox: &Outbox,
) -> Result<Vec<Result<Stored>>> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(map_sqlite)?;
    let now = now_millis();
    let mut results = Vec::with_capacity(batch.len());
    {
        let mut statements = AppendStatements::prepare(&tx).map_err(map_sqlite)?;
        for job in batch {
            results.push(append_one(&tx, &mut statements, &job.message, now)?);
        }
    }
    if outbox.wants(crate::store::outbox::MESSAGE_CREATED) {
        let events = crate::store::outbox::message_events(batch, &results);
        super::outbox::insert(&tx, outbox, &events, now).map_err(map_sqlite)?;
    }
    tx.commit().map_err(map_sqlite)?;
    outbox.committed();
    Ok(results)
}

/// The statements every append runs, looked up in the statement cache once per batch rather than per message.
struct AppendStatements<'tx> {
    next_seq: CachedStatement<'tx>,
    insert: CachedStatement<'tx>,
    bump_conversation: CachedStatement<'tx>,
    mark_own_read: CachedStatement<'tx>,
}

impl<'tx> AppendStatements<'tx> {
    fn prepare(tx: &'tx Transaction) -> rusqlite::Result<Self> {
        Ok(AppendStatements {
            // Plain statements on purpose: `INSERT .. RETURNING` builds an ephemeral table (a b-tree opened
            // and closed) per message.
            next_seq: tx.prepare_cached(
                // A member who is not muted, or the system account (server API) in a live conversation.
                "SELECT c.last_seq + 1 FROM conversations c
                 WHERE c.id = ?1 AND (EXISTS (SELECT 1 FROM members m WHERE m.conversation_id = ?1 AND m.user_id = ?2
                        AND (m.muted_until IS NULL OR m.muted_until <= ?3))
                    OR (c.archived_at IS NULL
                        AND EXISTS (SELECT 1 FROM users u WHERE u.id = ?2 AND u.system_name IS NOT NULL)))",
            )?,
            insert: tx.prepare_cached(
                "INSERT INTO messages (conversation_id, seq, sender_id, cmid, kind, content, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (cmid, sender_id) DO NOTHING",
            )?,
            bump_conversation: tx
                .prepare_cached("UPDATE conversations SET last_seq = ?2, last_ts = ?3 WHERE id = ?1")?,
            // What you wrote yourself is read: the sender's own messages never count as unread.
            mark_own_read: tx.prepare_cached(
                "UPDATE members SET read_seq = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
            )?,
        })
    }
}

/// The outer `Result` is a database failure; the inner one is this message's own outcome.
fn append_one(
    tx: &Transaction,
    statements: &mut AppendStatements,
    new: &NewMessage,
    now: i64,
) -> Result<Result<Stored>> {
    let next_seq: Option<i64> = statements
        .next_seq
        .query_row(params![new.conversation_id, new.sender_id, now], |row| {
            row.get(0)
        })
        .optional()
        .map_err(map_sqlite)?;
    let inserted = match next_seq {
        Some(seq) => {
            let rows = statements
                .insert
                .execute(params![
                    new.conversation_id,
                    seq,
                    new.sender_id,
                    new.cmid,
                    new.kind.as_str(),
                    new.content.to_string(),
                    now
                ])
                .map_err(map_sqlite)?;
            (rows == 1).then(|| (tx.last_insert_rowid(), seq))
        }
        None => None,
    };
    let Some((id, seq)) = inserted else {
        // Nothing inserted: either this cmid was already used (answer with the original) or not a member.
        return Ok(
            match message_by_cmid(tx, new.sender_id, &new.cmid).map_err(map_sqlite)? {
                Some(message) => Ok(Stored::Duplicate(message)),
                // A member whose send took no seq is muted.
                None if member_exists(tx, new.conversation_id, new.sender_id)
                    .map_err(map_sqlite)? =>
                {
                    Err(Error::Muted)
                }
                None => Err(rules::not_a_member()),
            },
        );
    };
    statements
        .bump_conversation
        .execute(params![new.conversation_id, seq, now])
        .map_err(map_sqlite)?;
    statements
        .mark_own_read
        .execute(params![new.conversation_id, new.sender_id, seq])
        .map_err(map_sqlite)?;
    Ok(Ok(Stored::New { id, seq, ts: now }))
}

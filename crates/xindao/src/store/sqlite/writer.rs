//! Group commit: one thread owns message appends, committing every batch of waiting sends in one transaction.
//!
//! Under light load a batch is one message and nothing waits for a timer; under heavy load batches grow on
//! their own, so one commit (and, with `synchronous = FULL`, one fsync) serves many sends. Replies and commit
//! hand-offs to fan-out run only after the batch has committed, in seq order.

use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{params, CachedStatement, Connection, OptionalExtension};
use tokio::sync::mpsc;

use super::checkpoint::Nudge;
use super::{map_sqlite, read_message, MESSAGE_COLUMNS};
use crate::error::{Error, Result};
use crate::model::{now_millis, Appended, Message, NewMessage};
use crate::store::append_queue::{AppendJob, GroupCommit};
use crate::store::{CommitSink, Committed};

/// Runs until every sender of `jobs` is gone, then returns (after committing what it had).
pub(super) fn run(
    conn: Arc<Mutex<Connection>>,
    mut jobs: mpsc::Receiver<AppendJob>,
    commit: GroupCommit,
    sink: CommitSink,
    checkpoint: Nudge,
) {
    let mut batch = Vec::with_capacity(commit.batch_max);
    let take_waiting = |batch: &mut Vec<AppendJob>, jobs: &mut mpsc::Receiver<AppendJob>| {
        while batch.len() < commit.batch_max {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
    };
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        take_waiting(&mut batch, &mut jobs);
        if commit.should_linger(batch.len()) {
            std::thread::sleep(commit.linger);
            take_waiting(&mut batch, &mut jobs);
        }
        let outcome = {
            let mut conn = conn.lock();
            let outcome = commit_batch(&mut conn, &batch);
            checkpoint.after_write(&conn);
            outcome
        };
        match outcome {
            Ok(results) => {
                // Handed to fan-out before anyone hears of the commit (a closed sink: fan-out is gone).
                let committed: Vec<Committed> = batch
                    .iter()
                    .zip(&results)
                    .filter_map(|(job, result)| match result {
                        Ok(appended) if !appended.duplicate => Some(Committed {
                            message: appended.message.clone(),
                            origin: job.origin,
                        }),
                        _ => None,
                    })
                    .collect();
                if !committed.is_empty() {
                    let _ = sink.blocking_send(committed);
                }
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, size = batch.len(), "append batch failed; nothing of it was committed");
                let message = match &error {
                    Error::Unavailable(detail) => detail.clone(),
                    other => other.to_string(),
                };
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(Error::Unavailable(message.clone())));
                }
            }
        }
    }
}

/// Runs every job of the batch in one transaction. Per-job refusals (not a member) do not abort the batch;
/// a database failure aborts all of it, so nothing is acked that was not committed.
fn commit_batch(conn: &mut Connection, batch: &[AppendJob]) -> Result<Vec<Result<Appended>>> {
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
    tx.commit().map_err(map_sqlite)?;
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
    fn prepare(tx: &'tx rusqlite::Transaction) -> rusqlite::Result<Self> {
        Ok(AppendStatements {
            // This thread is SQLite's only writer, so the seq read here cannot race another append. Plain
            // statements on purpose: `INSERT .. RETURNING` builds an ephemeral table (a b-tree opened and
            // closed) per message.
            next_seq: tx.prepare_cached(
                "SELECT c.last_seq + 1 FROM conversations c
                 WHERE c.id = ?1 AND EXISTS (SELECT 1 FROM members m WHERE m.conversation_id = ?1 AND m.user_id = ?2)",
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
    tx: &rusqlite::Transaction,
    statements: &mut AppendStatements,
    new: &NewMessage,
    now: i64,
) -> Result<Result<Appended>> {
    let content = new.content.to_string();
    let kind = new.kind.as_str();
    let next_seq: Option<i64> = statements
        .next_seq
        .query_row(params![new.conversation_id, new.sender_id], |row| {
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
                    kind,
                    content,
                    now
                ])
                .map_err(map_sqlite)?;
            (rows == 1).then(|| (tx.last_insert_rowid(), seq))
        }
        None => None,
    };
    let Some((id, seq)) = inserted else {
        // Nothing inserted: either this cmid was already used (answer with the original) or not a member.
        let existing = tx
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = ?1 AND cmid = ?2"
            ))
            .and_then(|mut stmt| {
                stmt.query_row(params![new.sender_id, new.cmid], read_message)
                    .optional()
            })
            .map_err(map_sqlite)?;
        return Ok(match existing {
            Some(message) => Ok(Appended {
                message,
                duplicate: true,
            }),
            None => Err(Error::Forbidden(
                "you are not a member of this conversation",
            )),
        });
    };
    statements
        .bump_conversation
        .execute(params![new.conversation_id, seq, now])
        .map_err(map_sqlite)?;
    statements
        .mark_own_read
        .execute(params![new.conversation_id, new.sender_id, seq])
        .map_err(map_sqlite)?;
    Ok(Ok(Appended {
        message: Message {
            id,
            conversation_id: new.conversation_id,
            seq,
            sender_id: new.sender_id,
            cmid: new.cmid.clone(),
            kind: new.kind,
            content: new.content.clone(),
            ts: now,
        },
        duplicate: false,
    }))
}

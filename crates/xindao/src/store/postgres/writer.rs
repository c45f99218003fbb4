//! The PostgreSQL side of group commit: up to four tasks per node run the shared loop
//! ([`group_commit::run`]), each committing every batch of waiting sends in one transaction.
//!
//! Several nodes write to one conversation at once; `UPDATE conversations SET last_seq = last_seq + 1`
//! inside the transaction serialises them on the row lock, so seqs stay gap-free and totally ordered. A
//! batch locks its conversations up front in id order, so two nodes' batches can never deadlock on them.
//! Membership is checked by the statement that takes the seq, under that lock. A batch's appends go to
//! PostgreSQL pipelined, one round trip for all of them; the rare message that needs a second look (a cmid
//! another node committed meanwhile) sends the batch back to be run one message at a time.

use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::map_pg;
use super::rows::message;
use crate::error::{Error, Result};
use crate::model::{now_millis, Message, NewMessage};
use crate::rules;
use crate::store::group_commit::{AppendJob, CommitBatch, Stored};
use crate::store::rows::MESSAGE_COLUMNS;

type Pg<T> = std::result::Result<T, tokio_postgres::Error>;

/// Attempts of one batch when PostgreSQL reports a deadlock or serialization failure (then nothing of it
/// was committed and it is safe to run again).
const ATTEMPTS: usize = 3;

/// A batch PostgreSQL does not finish within this is answered `unavailable` (a hung database must not hold
/// every send of the node forever). If the commit itself was in flight it may still land; a retry with the same
/// cmid then finds it.
const BATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Commits batches through the pool (a connection per batch, prepared statements cached per connection).
pub(super) struct PgBatch {
    pub pool: Pool,
    pub outbox: std::sync::Arc<crate::store::Outbox>,
}

impl CommitBatch for PgBatch {
    async fn commit(&mut self, batch: &[AppendJob]) -> Result<Vec<Result<Stored>>> {
        let mut attempt = 1;
        let mut mode = Mode::Pipelined;
        let outcome = loop {
            let attempt_result = tokio::time::timeout(
                BATCH_TIMEOUT,
                commit_batch(&self.pool, batch, mode, &self.outbox),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Failed::Other(Error::Unavailable(
                    "PostgreSQL did not answer in time".into(),
                )))
            });
            match attempt_result {
                // Rolled back: run the batch again with one message at a time.
                Err(Failed::Unsettled) => {
                    tracing::debug!(size = batch.len(), "append batch unsettled; one by one");
                    mode = Mode::OneByOne;
                }
                Err(Failed::Pg(error)) if attempt < ATTEMPTS && retryable(&error) => attempt += 1,
                Err(Failed::Pg(error)) => break Err(map_pg(error)),
                Err(Failed::Other(error)) => break Err(error),
                Ok(results) => break Ok(results),
            }
        };
        // Nothing of a failed batch was committed (or, after a timeout, it may land; a retry finds it).
        outcome.map_err(|error| match &error {
            Error::Internal(_) => Error::Internal(error.to_string()),
            _ => Error::Unavailable(error.to_string()),
        })
    }
}

/// Why a batch failed as a whole.
enum Failed {
    Pg(tokio_postgres::Error),
    Other(Error),
    /// The pipelined attempt met a message that needs the one-by-one path; nothing was committed.
    Unsettled,
}

/// How a batch's appends are sent.
#[derive(Clone, Copy)]
enum Mode {
    /// All at once, one round trip for the batch: the common case.
    Pipelined,
    /// One message at a time, settling each before the next (a cmid race with another node, or a
    /// membership change between statements).
    OneByOne,
}

impl From<tokio_postgres::Error> for Failed {
    fn from(error: tokio_postgres::Error) -> Self {
        Failed::Pg(error)
    }
}

/// Deadlock or serialization failure: PostgreSQL rolled back, running the batch again is safe.
fn retryable(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| code.code().starts_with("40"))
}

async fn commit_batch(
    pool: &Pool,
    batch: &[AppendJob],
    mode: Mode,
    outbox: &crate::store::Outbox,
) -> std::result::Result<Vec<Result<Stored>>, Failed> {
    let started = std::time::Instant::now();
    let mut client = pool
        .get()
        .await
        .map_err(|e| Failed::Other(Error::Unavailable(format!("postgres: {e}"))))?;
    crate::obs::hops::observe(&crate::obs::hops::hops().pool_wait, started.elapsed());
    let tx = client.transaction().await?;
    let mut conversations: Vec<i64> = batch.iter().map(|j| j.message.conversation_id).collect();
    conversations.sort_unstable();
    conversations.dedup();
    query(
        &tx,
        "SELECT id FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&conversations],
    )
    .await?;
    let now = now_millis();
    let results = match mode {
        // Dropping the transaction unsettled rolls it back.
        Mode::Pipelined => append_pipelined(&tx, batch, now)
            .await?
            .ok_or(Failed::Unsettled)?,
        Mode::OneByOne => {
            let mut results = Vec::with_capacity(batch.len());
            for job in batch {
                results.push(append_one(&tx, &job.message, now).await?);
            }
            results
        }
    };
    if outbox.wants(crate::store::outbox::MESSAGE_CREATED) {
        let events = crate::store::outbox::message_events(batch, &results);
        super::outbox::insert(&tx, outbox, &events, now).await?;
    }
    tx.commit().await?;
    outbox.committed();
    Ok(results)
}

/// Sends every append of the batch at once: tokio-postgres pipelines queries issued together on one
/// connection, and PostgreSQL runs them in the order sent, so seqs follow the batch order as they would one
/// by one, for one round trip instead of one per message. `None` when a message needs the one-by-one path:
/// another node committed its cmid meanwhile (the seq it took must be given back before a later message
/// takes the next one), or its sender became a member between statements.
async fn append_pipelined(
    tx: &Transaction<'_>,
    batch: &[AppendJob],
    now: i64,
) -> std::result::Result<Option<Vec<Result<Stored>>>, Failed> {
    let statement = tx.prepare_cached(APPEND_IN_ONE).await?;
    let contents: Vec<String> = batch
        .iter()
        .map(|job| job.message.content.to_string())
        .collect();
    let answers =
        futures_util::future::try_join_all(batch.iter().zip(&contents).map(|(job, content)| {
            let new = &job.message;
            let statement = &statement;
            async move {
                let kind = new.kind.as_str();
                let params: [&(dyn ToSql + Sync); 6] = [
                    &new.conversation_id,
                    &new.sender_id,
                    &new.cmid,
                    &kind,
                    content,
                    &now,
                ];
                tx.query(statement, &params).await
            }
        }))
        .await?;
    let mut results = Vec::with_capacity(batch.len());
    for (job, rows) in batch.iter().zip(answers) {
        match settle(tx, &job.message, &rows, now).await? {
            Settled::Done(result) => results.push(result),
            Settled::SeqTaken | Settled::MembershipChanged => return Ok(None),
        }
    }
    Ok(Some(results))
}

/// What [`APPEND_IN_ONE`]'s answer means for one message.
enum Settled {
    /// Inserted, a retry of a stored cmid (answered with the original), or refused: not a member.
    Done(Result<Stored>),
    /// A seq was taken but nothing inserted: another writer committed the same cmid meanwhile.
    SeqTaken,
    /// Nothing taken, yet the sender is a member now: membership changed between the statements.
    MembershipChanged,
}

async fn settle(tx: &Transaction<'_>, new: &NewMessage, rows: &[Row], now: i64) -> Pg<Settled> {
    let (id, seq, taken): (Option<i64>, Option<i64>, Option<i64>) = match rows.first() {
        Some(row) => (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?),
        None => (None, None, None),
    };
    if let (Some(id), Some(seq)) = (id, seq) {
        return Ok(Settled::Done(Ok(Stored::New { id, seq, ts: now })));
    }
    if taken.is_some() {
        return Ok(Settled::SeqTaken);
    }
    // Nothing taken: a retry of a stored cmid, or a sender who is not a member.
    if let Some(message) = find_by_cmid(tx, new).await? {
        return Ok(Settled::Done(Ok(Stored::Duplicate(message))));
    }
    Ok(match muted(tx, new, now).await? {
        Some(false) => Settled::MembershipChanged,
        Some(true) => Settled::Done(Err(Error::Muted)),
        None => Settled::Done(Err(rules::not_a_member())),
    })
}

/// Whether the sender is muted in the conversation at `now`; `None` when not a member.
async fn muted(tx: &Transaction<'_>, new: &NewMessage, now: i64) -> Pg<Option<bool>> {
    let rows = query(
        tx,
        "SELECT muted_until FROM members WHERE conversation_id = $1 AND user_id = $2",
        &[&new.conversation_id, &new.sender_id],
    )
    .await?;
    rows.first()
        .map(|row| {
            Ok(row
                .try_get::<_, Option<i64>>(0)?
                .is_some_and(|until| until > now))
        })
        .transpose()
}

/// Runs a statement prepared once per pooled connection (appends are the hot path).
async fn query(tx: &Transaction<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Pg<Vec<Row>> {
    let statement = tx.prepare_cached(sql).await?;
    tx.query(&statement, params).await
}

async fn find_by_cmid(tx: &Transaction<'_>, new: &NewMessage) -> Pg<Option<Message>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = $1 AND cmid = $2");
    let rows = query(tx, &sql, &[&new.sender_id, &new.cmid]).await?;
    rows.first().map(message).transpose()
}

/// The common append in one round trip: if the cmid is new and the sender a member, take the next seq, insert
/// and move the sender's own read position. Returns the inserted id and seq, and the seq taken (set but without
/// an insert when another node committed the same cmid meanwhile).
const APPEND_IN_ONE: &str = "
    WITH dup AS (SELECT 1 FROM messages WHERE sender_id = $2 AND cmid = $3),
    member AS (
        SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2
            AND (muted_until IS NULL OR muted_until <= $6)
        UNION ALL
        SELECT 1 FROM users WHERE id = $2 AND system_name IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM conversations WHERE id = $1 AND archived_at IS NOT NULL)
    ),
    next AS (
        UPDATE conversations SET last_seq = last_seq + 1, last_ts = $6
        WHERE id = $1 AND EXISTS (SELECT 1 FROM member) AND NOT EXISTS (SELECT 1 FROM dup)
        RETURNING last_seq
    ),
    ins AS (
        INSERT INTO messages (conversation_id, seq, sender_id, cmid, kind, content, created_at)
        SELECT $1, last_seq, $2, $3, $4::text, $5::text, $6::bigint FROM next
        ON CONFLICT (sender_id, cmid) DO NOTHING
        RETURNING id, seq
    ),
    own_read AS (
        UPDATE members SET read_seq = ins.seq FROM ins WHERE conversation_id = $1 AND user_id = $2
    )
    SELECT (SELECT id FROM ins), (SELECT seq FROM ins), (SELECT last_seq FROM next)";

/// How often an append is retried when another node changes the sender's membership or cmid between its
/// statements; in practice the second attempt settles it.
const APPEND_ATTEMPTS: usize = 3;

/// The outer `Result` is a database failure; the inner one is this message's own outcome.
async fn append_one(
    tx: &Transaction<'_>,
    new: &NewMessage,
    now: i64,
) -> std::result::Result<Result<Stored>, Failed> {
    let kind = new.kind.as_str();
    let content = new.content.to_string();
    for _ in 0..APPEND_ATTEMPTS {
        let rows = query(
            tx,
            APPEND_IN_ONE,
            &[
                &new.conversation_id,
                &new.sender_id,
                &new.cmid,
                &kind,
                &content,
                &now,
            ],
        )
        .await?;
        match settle(tx, new, &rows, now).await? {
            Settled::Done(result) => return Ok(result),
            Settled::SeqTaken => return lost_cmid_race(tx, new).await,
            // The sender became a member between the statements (a room_add on another node): again.
            Settled::MembershipChanged => {}
        }
    }
    Err(Failed::Other(Error::Internal(
        "append did not settle: membership kept changing".into(),
    )))
}

/// Another node committed the same cmid between our lookup and our insert (ON CONFLICT waited for it). Gives
/// the seq back (we still hold the row lock, so nobody took a later one) and answers with the winner's message.
async fn lost_cmid_race(
    tx: &Transaction<'_>,
    new: &NewMessage,
) -> std::result::Result<Result<Stored>, Failed> {
    query(
        tx,
        "UPDATE conversations SET last_seq = last_seq - 1 WHERE id = $1",
        &[&new.conversation_id],
    )
    .await?;
    match find_by_cmid(tx, new).await? {
        Some(message) => Ok(Ok(Stored::Duplicate(message))),
        None => Err(Failed::Other(Error::Internal(
            "cmid conflict without a winner".into(),
        ))),
    }
}

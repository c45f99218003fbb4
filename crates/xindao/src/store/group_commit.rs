//! Group commit, once for both stores: appends wait in a bounded queue; a writer takes every waiting append
//! (up to `batch_max`), lingers briefly when that shows concurrent senders, commits the batch in one
//! transaction through its backend, hands the new messages to the [`CommitSink`], and only then replies.
//!
//! Under light load a batch is one message and nothing waits for a timer; under heavy load batches grow on
//! their own, so one commit (one fsync, one PostgreSQL round trip) serves many sends. The SQLite store runs
//! [`run`] on its dedicated commit thread (a current-thread runtime), the PostgreSQL store as tasks.

use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::{CommitSink, Committed};
use crate::error::{Error, Result};
use crate::model::{Appended, Message, Millis, NewMessage};

/// One message waiting for its batch, the connection that sent it, and where its outcome goes.
pub(crate) struct AppendJob {
    pub message: NewMessage,
    pub origin: u64,
    /// The request that sent it ([`crate::obs::request_id`]): in its webhook event and bus envelope.
    pub request_id: Option<std::sync::Arc<str>>,
    /// Its commit span's trace context, for the fan-out span (empty unless traces are exported).
    pub trace: crate::obs::otel::Parent,
    pub reply: oneshot::Sender<Result<Appended>>,
}

/// What a backend's commit did with one message of the batch.
pub(crate) enum Stored {
    /// Inserted with this id and seq at `ts`.
    New { id: i64, seq: i64, ts: Millis },
    /// The sender's earlier message with the same cmid.
    Duplicate(Message),
}

/// A store's way of committing one batch.
pub(crate) trait CommitBatch {
    /// Commits the batch's messages in one transaction, in batch order, returning each one's outcome (a
    /// refusal, such as a sender who is not a member, does not abort the others). An `Err` means nothing of
    /// the batch was committed; each appender gets a copy of it (`Unavailable` or `Internal`).
    fn commit(
        &mut self,
        batch: &[AppendJob],
    ) -> impl Future<Output = Result<Vec<Result<Stored>>>> + Send;

    /// Waits `linger` for more appends to join the batch.
    fn linger(&mut self, linger: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(linger)
    }
}

/// How a store's writer groups appends into commits.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// Most messages in one commit.
    pub batch_max: usize,
    /// How long the writer waits for more messages before committing a batch that shows concurrent senders
    /// but is still small (as PostgreSQL's `commit_delay`). A commit has a large fixed cost (locks, WAL
    /// frames, on PostgreSQL a round trip and a flush), so under load a short wait buys fewer, larger
    /// commits; a lone message never waits. Zero disables it.
    pub linger: Duration,
}

impl GroupCommit {
    /// Whether to wait `linger` for more before committing a batch of `len` messages.
    pub fn should_linger(&self, len: usize) -> bool {
        !self.linger.is_zero() && len >= 2 && len < (self.batch_max / 16).max(2)
    }
}

/// Runs one writer until every sender of `jobs` is gone, committing what it already had.
pub(crate) async fn run(
    mut backend: impl CommitBatch,
    mut jobs: mpsc::Receiver<AppendJob>,
    commit: GroupCommit,
    sink: CommitSink,
) {
    let batch_max = commit.batch_max.max(1);
    let mut batch = Vec::with_capacity(batch_max);
    let mut replies = Vec::with_capacity(batch_max);
    while jobs.recv_many(&mut batch, batch_max).await > 0 {
        if commit.should_linger(batch.len()) {
            backend.linger(commit.linger).await;
            while batch.len() < batch_max {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        crate::obs::hops::observe_value(&crate::obs::hops::hops().commit_batch, batch.len() as f64);
        match backend.commit(&batch).await {
            Ok(results) => {
                let mut committed = Vec::with_capacity(batch.len());
                for (job, result) in batch.drain(..).zip(results) {
                    let AppendJob {
                        message,
                        origin,
                        request_id,
                        trace,
                        reply,
                    } = job;
                    let appended = result.map(|stored| match stored {
                        Stored::New { id, seq, ts } => {
                            let message = Message {
                                id,
                                conversation_id: message.conversation_id,
                                seq,
                                sender_id: message.sender_id,
                                cmid: message.cmid,
                                kind: message.kind,
                                content: message.content,
                                ts,
                                state: None,
                            };
                            committed.push(Committed {
                                message: message.clone(),
                                origin,
                                request_id,
                                trace,
                            });
                            Appended {
                                message,
                                duplicate: false,
                            }
                        }
                        Stored::Duplicate(message) => Appended {
                            message,
                            duplicate: true,
                        },
                    });
                    replies.push((reply, appended));
                }
                // Handed to fan-out before anyone is acked: a client never holds an ack whose push is not
                // on its way.
                if !committed.is_empty() && sink.send(committed).await.is_err() {
                    tracing::debug!("commit sink closed; committed messages are not pushed");
                }
                for (reply, appended) in replies.drain(..) {
                    let _ = reply.send(appended);
                }
            }
            Err(error) => {
                tracing::warn!(%error, size = batch.len(), "append batch failed; nothing of it was committed");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(copy_of(&error)));
                }
            }
        }
    }
}

/// The failure of a whole batch, for each of its appenders.
fn copy_of(error: &Error) -> Error {
    match error {
        Error::Internal(detail) => Error::Internal(detail.clone()),
        Error::Unavailable(detail) => Error::Unavailable(detail.clone()),
        other => Error::Unavailable(other.to_string()),
    }
}

/// The sending side of the writers' queues; each writer owns one receiver and stops once the queue is closed
/// and drained.
pub(crate) struct AppendQueue {
    /// One per writer; a conversation always goes to the same one, which keeps its appends (and the pushes
    /// that follow their commits) in order. Empty once closed.
    senders: Mutex<Vec<mpsc::Sender<AppendJob>>>,
}

impl AppendQueue {
    /// A queue for `writers` writers (at least one), sharded by conversation.
    pub fn sharded(
        capacity: usize,
        writers: usize,
    ) -> (AppendQueue, Vec<mpsc::Receiver<AppendJob>>) {
        let (senders, receivers) = (0..writers.max(1)).map(|_| mpsc::channel(capacity)).unzip();
        (
            AppendQueue {
                senders: Mutex::new(senders),
            },
            receivers,
        )
    }

    /// Queues a message and waits until its batch has committed (or failed).
    pub async fn append(&self, message: NewMessage, origin: u64) -> Result<Appended> {
        let closed = || Error::Unavailable("server is shutting down".into());
        let sender = {
            let senders = self.senders.lock();
            let shard = (message.conversation_id as u64 % senders.len().max(1) as u64) as usize;
            senders.get(shard).cloned()
        }
        .ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        let started = std::time::Instant::now();
        // The wait for the commit, as a span of the request (debug: only trace export asks for it).
        let span = tracing::debug_span!("commit", conversation_id = message.conversation_id);
        let job = AppendJob {
            message,
            origin,
            request_id: crate::obs::request_id::current().map(|id| id.0),
            trace: crate::obs::otel::Parent::of(&span),
            reply,
        };
        let outcome = tracing::Instrument::instrument(
            async {
                sender.send(job).await.map_err(|_| closed())?;
                answer
                    .await
                    .map_err(|_| Error::Unavailable("commit writer stopped".into()))
            },
            span,
        )
        .await?;
        let waited = started.elapsed();
        crate::obs::hops::observe(&crate::obs::hops::hops().commit_wait, waited);
        crate::obs::timing::add_commit(waited);
        outcome
    }

    pub fn is_open(&self) -> bool {
        !self.senders.lock().is_empty()
    }

    /// Takes no more messages; each writer commits what it already has, then ends.
    pub fn close(&self) {
        drop(std::mem::take(&mut *self.senders.lock()));
    }
}

//! The bounded queue in front of a store's group-commit writer, shared by the SQLite and PostgreSQL stores.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::model::{Appended, NewMessage};

/// One message waiting for its batch, and where its outcome goes.
pub(crate) struct AppendJob {
    pub message: NewMessage,
    /// The connection that sent it, handed to fan-out beside the committed message.
    pub origin: u64,
    pub reply: oneshot::Sender<Result<Appended>>,
}

/// The sending side; each writer owns one receiver and stops once the queue is closed and drained.
pub(crate) struct AppendQueue {
    /// One per writer; a conversation always goes to the same one, which keeps its appends (and the pushes
    /// that follow their commits) in order. Empty once closed.
    senders: Mutex<Vec<mpsc::Sender<AppendJob>>>,
}

impl AppendQueue {
    /// A queue for one writer.
    pub fn new(capacity: usize) -> (AppendQueue, mpsc::Receiver<AppendJob>) {
        let (queue, mut receivers) = AppendQueue::sharded(capacity, 1);
        let receiver = receivers.pop().expect("one shard");
        (queue, receiver)
    }

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
        sender
            .send(AppendJob {
                message,
                origin,
                reply,
            })
            .await
            .map_err(|_| closed())?;
        answer
            .await
            .map_err(|_| Error::Unavailable("commit writer stopped".into()))?
    }

    pub fn is_open(&self) -> bool {
        !self.senders.lock().is_empty()
    }

    /// Takes no more messages; each writer commits what it already has, then ends.
    pub fn close(&self) {
        drop(std::mem::take(&mut *self.senders.lock()));
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

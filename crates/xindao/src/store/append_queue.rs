//! The bounded queue in front of a store's group-commit writer, shared by the SQLite and PostgreSQL stores.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::model::{Appended, NewMessage};

/// One message waiting for its batch, and where its outcome goes.
pub(crate) struct AppendJob {
    pub message: NewMessage,
    pub reply: oneshot::Sender<Result<Appended>>,
}

/// The sending side; the writer owns the receiver and stops once the queue is closed and drained.
pub(crate) struct AppendQueue {
    sender: Mutex<Option<mpsc::Sender<AppendJob>>>,
}

impl AppendQueue {
    pub fn new(capacity: usize) -> (AppendQueue, mpsc::Receiver<AppendJob>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            AppendQueue {
                sender: Mutex::new(Some(tx)),
            },
            rx,
        )
    }

    /// Queues a message and waits until its batch has committed (or failed).
    pub async fn append(&self, message: NewMessage) -> Result<Appended> {
        let closed = || Error::Unavailable("server is shutting down".into());
        let sender = self.sender.lock().clone().ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(AppendJob { message, reply })
            .await
            .map_err(|_| closed())?;
        answer
            .await
            .map_err(|_| Error::Unavailable("commit writer stopped".into()))?
    }

    pub fn is_open(&self) -> bool {
        self.sender.lock().is_some()
    }

    /// Takes no more messages; the writer commits what it already has, then ends.
    pub fn close(&self) {
        drop(self.sender.lock().take());
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

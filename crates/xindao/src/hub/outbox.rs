//! The queue between the hub and one connection's task: the hub pushes without waiting, the task alone writes.
//!
//! Exactly one owner writes a socket: its connection task (`conn::connection`). The hub never touches sockets;
//! it hands each recipient the frame it encoded once for the whole delivery (a shared `Utf8Bytes`, so a push
//! is a reference count, not a copy) through a bounded queue. A full queue means the client stopped reading:
//! the hub evicts it as a slow consumer and drops this sender, and the task closes with 4009.

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;

/// What the hub hands to a connection's task.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A push, already encoded.
    Frame(Utf8Bytes),
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// In the connection's queue; its task writes it.
    Queued,
    /// The queue is full: the connection is a slow consumer.
    Full,
    /// The connection's task is gone.
    Closed,
}

/// The hub's end of a connection's queue.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Outbound>,
}

/// A connection's queue of at most `capacity` pushes: the hub's end and the task's end.
pub fn outbox(capacity: usize) -> (Outbox, mpsc::Receiver<Outbound>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (Outbox { tx }, rx)
}

impl Outbox {
    /// Queues a push without waiting.
    pub fn push(&self, frame: &Utf8Bytes) -> Pushed {
        self.send(Outbound::Frame(frame.clone()))
    }

    /// Queues `outbound` behind every push already queued, without waiting.
    pub fn send(&self, outbound: Outbound) -> Pushed {
        match self.tx.try_send(outbound) {
            Ok(()) => Pushed::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Pushed::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Pushed::Closed,
        }
    }
}

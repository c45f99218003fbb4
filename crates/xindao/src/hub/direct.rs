//! Pushes written by a connection's shard while the connection is parked, without waking it.
//!
//! A push wakes the recipient's connection, which then pops it, frames it through tungstenite, flushes, and
//! registers its waits again: in a broadcast that costs about as much CPU as the socket write itself
//! (`docs/decisions/direct-writes.md`). So a connection that parks with nothing unsent (its queue empty, its
//! socket on a frame boundary) lets its shard write for it: a push to it is queued as always, and the queue
//! is put on its shard's [`DirectWrites`] list instead of waking the connection. The shard task, which also
//! polls the connection, takes the list and writes each queue's pushes to its socket (header and payload in
//! one `send`: the frame is encoded once for all recipients, `encoded.rs`). Whatever the socket does not take
//! whole, or anything that is not a push, stays at the front of the queue and the connection is woken to
//! write it: the rest of a frame goes first, as [`Outbound::Raw`](super::Outbound::Raw), then the queue in order.
//!
//! The connection parks and unparks under its queue's lock, and the shard writes only under it, so a socket
//! is never written by two at once, and what the shard writes always follows what the connection wrote.

use std::sync::Arc;
use std::task::Poll;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

/// A parked connection's queue, as its shard sees it (`outbox.rs`).
pub trait ParkedQueue: Send + Sync + std::fmt::Debug {
    /// Writes the queued pushes to the socket if the connection is still parked; wakes the connection for
    /// whatever is left.
    fn write_parked(&self);
}

type QueueRef = Arc<dyn ParkedQueue>;

/// One shard's parked connections with pushes waiting (each listed once until the shard takes it).
#[derive(Debug, Default)]
pub struct DirectWrites {
    listed: Mutex<Vec<QueueRef>>,
    shard: AtomicWaker,
}

/// The queues a delivery listed, handed to their shards together when it is done (or dropped): one lock
/// and at most one wake-up per shard per delivery, and the shard does not start on a delivery before the hub
/// has finished handing it out.
#[derive(Default)]
pub struct Listing {
    shards: Vec<(Arc<DirectWrites>, Vec<QueueRef>)>,
}

impl Listing {
    pub fn add(&mut self, shard: &Arc<DirectWrites>, queue: QueueRef) {
        match self.shards.iter_mut().find(|(s, _)| Arc::ptr_eq(s, shard)) {
            Some((_, queues)) => queues.push(queue),
            None => self.shards.push((shard.clone(), vec![queue])),
        }
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        for (shard, queues) in self.shards.drain(..) {
            shard.list(queues);
        }
    }
}

impl DirectWrites {
    /// Lists parked connections' queues; the shard is woken by the first ones since it last took the list.
    fn list(&self, queues: Vec<QueueRef>) {
        let first = {
            let mut listed = self.listed.lock();
            let first = listed.is_empty();
            if first {
                *listed = queues;
            } else {
                listed.extend(queues);
            }
            first
        };
        if first {
            self.shard.wake();
        }
    }

    /// Waits until connections are listed, then writes their pushes. Run by the shard's task, which alone
    /// takes the list.
    pub async fn write_listed(&self) {
        let listed = std::future::poll_fn(|cx| {
            self.shard.register(cx.waker());
            let mut listed = self.listed.lock();
            if listed.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(std::mem::take(&mut *listed))
            }
        })
        .await;
        for queue in listed {
            queue.write_parked();
        }
    }
}

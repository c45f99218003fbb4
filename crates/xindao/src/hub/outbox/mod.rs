//! The queue between the hub and one connection: the hub pushes without waiting, never touching a socket.
//!
//! Only the connection's shard writes its socket: the connection task (`conn::connection`) when it runs, or
//! its shard directly while the task is parked with nothing unsent (`direct.rs`). The hub hands each
//! recipient the push it encoded once for the whole delivery (a shared [`Encoded`], so a push is a reference
//! count, not a copy) through a bounded queue: a `VecDeque` behind an uncontended lock with the task's waker
//! beside it (one lock per push and per pop; tokio's `mpsc` took a semaphore, a block list, ready bits and an
//! atomic waker, and allocated a 32-slot block for every idle connection). It is bounded twice: in frames
//! (`outbound_queue`) and, with the task's unsent writes, in bytes ([`Budget`], `max_outstanding_bytes`). A
//! full queue or an exceeded budget means the client stopped reading: the hub evicts it as a slow consumer
//! and drops this sender, and the task closes with 4009.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::Notify;

mod parked;

use super::direct::{DirectWrites, Listing};
use super::encoded::Encoded;
use parked::Direct;

/// One push in this many, per connection (its first and every 16th after), carries the time it was queued,
/// for `xindao_push_wait_seconds`: a clock read per push would cost more on the fan-out path than the rest of
/// queuing it.
pub const PUSH_WAIT_SAMPLE: u32 = 16;

/// What the hub hands to a connection's task.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A push, already encoded.
    Frame(Arc<Encoded>),
    /// A push sampled for the push-wait histogram ([`PUSH_WAIT_SAMPLE`]): when it was queued.
    Timed(Arc<Encoded>, Instant),
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
    /// The rest of a push its shard wrote in part (`direct.rs`): written as it is, before anything else.
    /// Queued only while the connection is parked, so its next poll takes it first (`conn::wait` polls
    /// the queue before the socket and the timer; a shutdown, seen before the queue, finishes it before
    /// the close frame).
    Raw(bytes::Bytes),
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// In the connection's queue; its task writes it.
    Queued,
    /// The queue is full: the connection is a slow consumer.
    Full,
    /// The push would take the connection over its byte budget: a slow consumer, closed at once.
    OverBudget,
    /// The connection's task is gone.
    Closed,
}

/// A connection's outstanding bytes: the pushes in its queue plus what its task has handed to the socket and
/// the socket has not yet taken (tungstenite's write buffer holds no more than that). The hub adds a push's
/// bytes when it queues it; the task adds a reply's bytes when it writes it and subtracts both once flushed.
/// One atomic add per push: no lock, no allocation on the fan-out path.
#[derive(Debug)]
pub struct Budget {
    outstanding: AtomicUsize,
    max: usize,
    /// Pushes queued, to pick the ones sampled for the push-wait histogram.
    pushes: AtomicU32,
    /// Woken when a push was refused for the budget, so that a task waiting on its socket stops at once.
    exceeded: Notify,
}

impl Budget {
    fn new(max: usize) -> Budget {
        Budget {
            outstanding: AtomicUsize::new(0),
            max,
            pushes: AtomicU32::new(0),
            exceeded: Notify::new(),
        }
    }

    /// Bytes queued or written and not yet taken by the socket.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Whether `bytes` more would go over the budget.
    pub fn would_exceed(&self, bytes: usize) -> bool {
        self.outstanding().saturating_add(bytes) > self.max
    }

    /// Counts `bytes` if they fit the budget; otherwise counts nothing, wakes the task, and returns false.
    fn take(&self, bytes: usize) -> bool {
        let before = self.outstanding.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) <= self.max {
            return true;
        }
        self.release(bytes);
        self.exceeded.notify_one();
        false
    }

    /// Counts `bytes` written by the task itself (a reply).
    pub fn add(&self, bytes: usize) {
        self.outstanding.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Uncounts `bytes` the socket has taken.
    pub fn release(&self, bytes: usize) {
        self.outstanding.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Completes once a push has been refused for the budget (at once if one was since the last call).
    pub async fn exceeded(&self) {
        self.exceeded.notified().await
    }
}

/// The queue both ends share.
#[derive(Debug, Default)]
struct Shared {
    items: VecDeque<Outbound>,
    /// The task's waker while it waits on an empty queue; taken by the push that wakes it.
    waker: Option<Waker>,
    /// The hub dropped its end (the connection was evicted, or unregistered).
    sender_gone: bool,
    /// The task dropped its end (the connection ended).
    receiver_gone: bool,
    /// The socket and shard, for pushes written by the shard (`direct.rs`); `None` for a queue without.
    direct: Option<Direct>,
    /// The task is parked with nothing unsent: a push is written by its shard, without waking it.
    parked: bool,
    /// The queue is on its shard's list of queues to write.
    listed: bool,
}

/// Queue slots a connection keeps once its queue has emptied: a burst may have grown it to `outbound_queue`
/// slots, which an idle connection should not keep.
const SLOTS_KEPT: usize = 16;

impl Shared {
    fn pop(&mut self) -> Option<Outbound> {
        let outbound = self.items.pop_front();
        if self.items.is_empty() && self.items.capacity() > SLOTS_KEPT {
            self.items.shrink_to(SLOTS_KEPT);
        }
        outbound
    }
}

/// The hub's end of a connection's queue.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Mutex<Shared>>,
    capacity: usize,
    budget: Arc<Budget>,
    info: Box<ConnInfo>,
}

/// Who is at the other end of a connection, for the server API's session list (`GET
/// /v1/server/users/{id}/sessions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// When the socket was admitted (ms since the epoch).
    pub connected_at: crate::model::Millis,
    /// The client's address (behind a trusted proxy, the one it forwarded).
    pub address: Option<std::net::IpAddr>,
    /// The upgrade's `User-Agent`, at most [`USER_AGENT_MAX`] bytes of it.
    pub user_agent: Option<Box<str>>,
}

/// Bytes of a `User-Agent` kept per connection.
pub const USER_AGENT_MAX: usize = 256;

/// The task's end of a connection's queue, with the budget it shares with the hub.
#[derive(Debug)]
pub struct Queue {
    shared: Arc<Mutex<Shared>>,
    pub budget: Arc<Budget>,
}

/// A connection's queue of at most `capacity` pushes and `max_bytes` outstanding bytes: the hub's end and the
/// task's end.
pub fn outbox(capacity: usize, max_bytes: usize) -> (Outbox, Queue) {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let budget = Arc::new(Budget::new(max_bytes));
    (
        Outbox {
            shared: shared.clone(),
            capacity: capacity.max(1),
            budget: budget.clone(),
            info: Box::new(ConnInfo {
                connected_at: crate::model::now_millis(),
                ..ConnInfo::default()
            }),
        },
        Queue { shared, budget },
    )
}

impl Outbox {
    /// Describes the connection (its address and user agent).
    pub fn with_info(mut self, info: ConnInfo) -> Outbox {
        self.info = Box::new(info);
        self
    }

    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// Queues a push without waiting, if it fits the queue and the byte budget.
    pub fn push(&self, frame: &Arc<Encoded>) -> Pushed {
        self.push_listing(frame, &mut Listing::default())
    }

    /// [`Outbox::push`], one of a delivery's: a parked connection's queue goes on `listing`, for its shard.
    pub fn push_listing(&self, frame: &Arc<Encoded>, listing: &mut Listing) -> Pushed {
        let bytes = frame.text.len();
        if !self.budget.take(bytes) {
            return Pushed::OverBudget;
        }
        let sampled = self.budget.pushes.fetch_add(1, Ordering::Relaxed) % PUSH_WAIT_SAMPLE == 0;
        let outbound = if sampled {
            Outbound::Timed(frame.clone(), Instant::now())
        } else {
            Outbound::Frame(frame.clone())
        };
        let pushed = self.enqueue(outbound, listing);
        if pushed != Pushed::Queued {
            self.budget.release(bytes);
        }
        pushed
    }

    /// Queues `outbound` behind every push already queued, without waiting (not counted in the budget: a
    /// close is a few bytes).
    pub fn send(&self, outbound: Outbound) -> Pushed {
        self.enqueue(outbound, &mut Listing::default())
    }

    fn enqueue(&self, outbound: Outbound, listing: &mut Listing) -> Pushed {
        let waker = {
            let mut shared = self.shared.lock();
            if shared.receiver_gone {
                return Pushed::Closed;
            }
            if shared.items.len() >= self.capacity {
                return Pushed::Full;
            }
            shared.items.push_back(outbound);
            if !shared.parked {
                shared.waker.take()
            } else {
                // Its shard writes it (`direct.rs`): the task stays asleep.
                if !shared.listed {
                    shared.listed = true;
                    if let Some(direct) = &shared.direct {
                        listing.add(&direct.shard, self.shared.clone());
                    }
                }
                None
            }
        };
        // Woken after the lock is released, so that the task does not wait on it.
        if let Some(waker) = waker {
            waker.wake();
        }
        Pushed::Queued
    }
}

impl Drop for Outbox {
    /// The task sees the queue closed once it has taken what is in it.
    fn drop(&mut self) {
        let waker = {
            let mut shared = self.shared.lock();
            shared.sender_gone = true;
            shared.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Queue {
    /// Lets the task's shard write pushes to `socket` while the task is parked ([`Queue::park`]).
    pub fn with_socket(self, socket: Arc<TcpStream>, shard: Arc<DirectWrites>) -> Queue {
        self.shared.lock().direct = Some(Direct {
            socket,
            shard,
            budget: self.budget.clone(),
        });
        self
    }

    /// The task parks with nothing unsent (the socket on a frame boundary): until [`Queue::busy`], its
    /// shard writes the pushes. Nothing changes while a push is queued: the task is woken for it.
    pub fn park(&self) {
        let mut shared = self.shared.lock();
        if shared.items.is_empty() && shared.direct.is_some() {
            shared.parked = true;
        }
    }

    /// The task runs: it writes its queue itself from now on.
    pub fn busy(&self) {
        self.shared.lock().parked = false;
    }

    /// The next push, waiting for one; `None` once the hub dropped the sender and the queue is empty.
    /// Cancel-safe: a push is only taken when it is returned.
    pub async fn recv(&mut self) -> Option<Outbound> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next push; `Ready(None)` once the hub dropped the sender and the queue is empty.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Outbound>> {
        let mut shared = self.shared.lock();
        if let Some(outbound) = shared.pop() {
            return Poll::Ready(Some(outbound));
        }
        if shared.sender_gone {
            return Poll::Ready(None);
        }
        match &shared.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => shared.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next push without waiting.
    pub fn try_recv(&mut self) -> Result<Outbound, TryRecvError> {
        let mut shared = self.shared.lock();
        match shared.pop() {
            Some(outbound) => Ok(outbound),
            None if shared.sender_gone => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// The rest of a push the shard wrote in part, if it is at the front of the queue (`direct.rs`).
    pub fn take_leading_raw(&mut self) -> Option<bytes::Bytes> {
        let mut shared = self.shared.lock();
        match shared.items.front() {
            Some(Outbound::Raw(_)) => match shared.pop() {
                Some(Outbound::Raw(rest)) => Some(rest),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether the hub dropped the sender (the connection was evicted).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().sender_gone
    }

    pub fn is_empty(&self) -> bool {
        self.shared.lock().items.is_empty()
    }
}

impl Drop for Queue {
    /// Later pushes are refused as [`Pushed::Closed`]; the frames still queued are freed now.
    fn drop(&mut self) {
        let items = {
            let mut shared = self.shared.lock();
            shared.receiver_gone = true;
            shared.waker = None;
            // The socket closes with the task, not when the hub lets go of the queue.
            shared.parked = false;
            shared.direct = None;
            std::mem::take(&mut shared.items)
        };
        drop(items);
    }
}

#[cfg(test)]
mod tests;

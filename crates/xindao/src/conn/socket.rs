//! A connection's socket and push queue, and the writes to it, bounded in time and in bytes.
//!
//! Writes are gathered: a reply and the pushes queued behind it, or up to [`WRITE_BATCH`] queued pushes, go
//! into tungstenite's write buffer and leave in one flush. Every byte handed to the socket stays counted in
//! the connection's [`Budget`] (with the pushes still queued) until a flush has sent it. While a flush waits on
//! a socket that takes nothing, the task still watches:
//! - a push the hub refused for the budget ends the connection at once (4009, [`End::Abort`]): no close
//!   handshake, which would wait behind the bytes the client is not reading, so its memory is freed now;
//! - the client's next frame is read (one at most, held in [`Conn::heard`]) and handed back to be answered;
//!   its reply is kept only if it fits the budget next to what is still unsent ([`Conn::write`]).
//!
//! Nothing stays unsent longer than the write timeout, counted from when the socket first held bytes back;
//! then the connection is dropped, counted as a 4009 close.
//!
//! When the task waits with nothing unsent it parks ([`Conn::park`]), and its shard writes its pushes
//! (`hub::direct`); the rest of a push the socket took only in part comes back to the task as
//! [`Outbound::Raw`], written first and as it is ([`Conn::write_raw`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use futures_util::{Sink, Stream};
use tungstenite::Message;

use super::upgrade::Socket;
use super::{End, CLOSE_SLOW_CONSUMER};
use crate::hub::encoded::Encoded;
use crate::hub::{Outbound, Queue};
use crate::obs::hops;

/// Most queued pushes written before one flush.
const WRITE_BATCH: usize = 64;

/// Turns of a connection's loops (a request, a batch of pushes, a heartbeat) before it yields to its shard.
const TURNS_PER_YIELD: u8 = 16;

const OVER_BUDGET: End = End::Abort(CLOSE_SLOW_CONSUMER, "slow consumer: over byte budget");

const WRITE_TIMED_OUT: End = End::Abort(CLOSE_SLOW_CONSUMER, "slow consumer: write timed out");

/// Runs `future` with a time limit, arming a timer only when it does not finish on its first poll: most
/// socket writes complete at once, and a timer per write is a measurable cost in fan-out. The timer is
/// boxed because a tokio `Sleep` is several hundred bytes, which every idle connection's task would carry.
pub(super) async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let first = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    let mut deadline = match first {
        Poll::Ready(output) => return Some(output),
        Poll::Pending => Box::pin(tokio::time::sleep(limit)),
    };
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => deadline.as_mut().poll(cx).map(|()| None),
    })
    .await
}

/// A connection's socket and the task's end of its push queue.
pub(super) struct Conn {
    pub(super) socket: Socket,
    pub(super) queue: Queue,
    pub(super) write_timeout: Duration,
    /// Bytes handed to the socket since its last completed flush (counted in the budget).
    unflushed: usize,
    /// When the socket started holding back what was handed to it (`None` once flushed).
    stalled_since: Option<Instant>,
    /// A frame the client sent while a flush waited: handled before the socket is read again.
    pub(super) heard: Option<Message>,
    /// Turns of the task's loops since it last let its shard's other connections run.
    turns: u8,
    /// The upgrade request's id, the first part of each of the connection's request ids.
    pub(super) upgrade_id: Arc<str>,
    /// Whether a flush waited on the socket (reading it with the connection's own waker) since
    /// [`Conn::take_waited`] was last called.
    waited: bool,
}

impl Conn {
    pub(super) fn new(
        socket: Socket,
        queue: Queue,
        write_timeout: Duration,
        upgrade_id: Arc<str>,
    ) -> Conn {
        Conn {
            upgrade_id,
            socket,
            queue,
            write_timeout,
            unflushed: 0,
            stalled_since: None,
            heard: None,
            turns: 0,
            waited: false,
        }
    }

    /// Whether a flush waited on the socket since the last call (see `wait.rs`: the socket's read waker is
    /// then the connection's own, not the wake flag's).
    pub(super) fn take_waited(&mut self) -> bool {
        std::mem::take(&mut self.waited)
    }

    /// Counts one turn of the task's loops, yielding every [`TURNS_PER_YIELD`]th: a connection runs in its
    /// shard outside tokio's cooperative budget, so a client that keeps its socket full must not keep the
    /// shard's other connections waiting.
    pub(super) async fn turn(&mut self) {
        self.turns += 1;
        if self.turns >= TURNS_PER_YIELD {
            self.turns = 0;
            tokio::task::yield_now().await;
        }
    }

    /// Parks the connection: from now until its next poll, a push to its empty queue is written to the socket
    /// by the pusher, if nothing of the connection's own is unsent (the socket then ends on a frame boundary).
    pub(super) fn park(&self) {
        if !self.stalled() && self.heard.is_none() && self.socket.get_ref().drained() {
            self.queue.park();
        }
    }

    /// Whether the socket still holds back bytes handed to it (a flush to resume, see [`Conn::flush`]).
    pub(super) fn stalled(&self) -> bool {
        self.unflushed > 0
    }

    /// Writes a reply (or greeting) and then whatever pushes are already queued, flushing once. On a socket
    /// that still holds back earlier bytes, a reply that does not fit the byte budget next to them is dropped
    /// and the connection ends (4009).
    pub(super) async fn write(&mut self, reply: Utf8Bytes) -> Result<(), End> {
        let bytes = reply.len();
        if self.stalled() && self.queue.budget.would_exceed(bytes) {
            return Err(OVER_BUDGET);
        }
        self.queue.budget.add(bytes);
        self.hand_over(reply)?;
        self.write_queued(None).await
    }

    /// Writes one queued push and whatever else is queued, then flushes once.
    pub(super) async fn write_pushes(&mut self, first: Option<Outbound>) -> Result<(), End> {
        self.write_queued(Some(first)).await
    }

    /// The next queued push without waiting: `None` when the queue is empty, `Some(None)` when the hub
    /// dropped our queue's sender.
    fn next_queued(&mut self) -> Option<Option<Outbound>> {
        match self.queue.try_recv() {
            Ok(outbound) => Some(Some(outbound)),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => None,
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => Some(None),
        }
    }

    async fn write_queued(&mut self, first_push: Option<Option<Outbound>>) -> Result<(), End> {
        let mut written = 0;
        let mut next = first_push.or_else(|| self.next_queued());
        while let Some(outbound) = next.take() {
            match outbound {
                // The hub dropped our queue's sender: we were evicted as a slow consumer.
                None => return Err(End::Close(CLOSE_SLOW_CONSUMER, "slow consumer: resync")),
                Some(Outbound::Close(code, reason)) => return Err(End::Close(code, reason)),
                Some(Outbound::Frame(frame)) => self.write_push(frame, None)?,
                Some(Outbound::Raw(rest)) => self.write_raw(rest).await?,
                Some(Outbound::Timed(frame, queued_at)) => {
                    self.write_push(frame, Some(queued_at))?
                }
            }
            written += 1;
            if written < WRITE_BATCH {
                next = self.next_queued();
            }
        }
        self.flush().await
    }

    /// Writes the rest of a push its shard wrote in part, if it is the next thing queued.
    pub(super) async fn write_leading_raw(&mut self) -> Result<(), End> {
        match self.queue.take_leading_raw() {
            Some(rest) => self.write_raw(rest).await,
            None => Ok(()),
        }
    }

    /// Writes the rest of a push its shard wrote in part, as it is, before anything else: tungstenite holds
    /// nothing then (the connection was parked).
    async fn write_raw(&mut self, rest: bytes::Bytes) -> Result<(), End> {
        use tokio::io::AsyncWriteExt;
        let bytes = rest.len();
        let stream = self.socket.get_mut();
        match within(self.write_timeout, stream.write_all(&rest)).await {
            Some(Ok(())) => {
                self.queue.budget.release(bytes);
                Ok(())
            }
            Some(Err(_)) => Err(End::Gone),
            None => Err(WRITE_TIMED_OUT),
        }
    }

    /// Hands a queued push to the socket (counted by the hub when it queued it), observing its wait in the
    /// queue if it was sampled.
    fn write_push(&mut self, push: Arc<Encoded>, queued_at: Option<Instant>) -> Result<(), End> {
        if self.queue.is_closed() && self.queue.is_empty() {
            return Err(End::Close(CLOSE_SLOW_CONSUMER, "slow consumer: resync"));
        }
        if let Some(queued_at) = queued_at {
            hops::observe(&hops::hops().push_wait, queued_at.elapsed());
        }
        self.hand_over(push.text.clone())
    }

    /// Puts a frame into tungstenite's write buffer without waiting for the socket to take earlier ones
    /// (tungstenite buffers it and writes what the socket takes); the flush waits.
    fn hand_over(&mut self, text: Utf8Bytes) -> Result<(), End> {
        self.unflushed += text.len();
        // The same bytes under tungstenite's name for them (checked as UTF-8 again, on the queued path only).
        let text = tungstenite::Utf8Bytes::try_from(bytes::Bytes::from(text))
            .map_err(|_| End::Close(super::CLOSE_INTERNAL, "invalid frame"))?;
        Pin::new(&mut self.socket)
            .start_send(Message::Text(text))
            .map_err(|error| {
                tracing::debug!(%error, "socket write failed");
                End::from_write_error(error)
            })
    }

    /// Flushes what was handed to the socket. Returns early, with the flush still to resume, when the client
    /// sent a frame meanwhile ([`Conn::heard`]).
    pub(super) async fn flush(&mut self) -> Result<(), End> {
        let first =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut self.socket).poll_flush(cx))).await;
        match first {
            Poll::Ready(Ok(())) => self.flushed(),
            Poll::Ready(Err(_)) => Err(End::Gone),
            // Boxed: the waiting state is needed only by a socket that holds bytes back.
            Poll::Pending => {
                self.waited = true;
                Box::pin(self.wait_flush()).await
            }
        }
    }

    fn flushed(&mut self) -> Result<(), End> {
        self.queue
            .budget
            .release(std::mem::take(&mut self.unflushed));
        self.stalled_since = None;
        Ok(())
    }

    /// Waits for the socket to take what it holds back, watching the budget and reading the client's next
    /// frame meanwhile.
    async fn wait_flush(&mut self) -> Result<(), End> {
        let since = *self.stalled_since.get_or_insert_with(Instant::now);
        let deadline = tokio::time::sleep_until((since + self.write_timeout).into());
        let budget = self.queue.budget.clone();
        let exceeded = budget.exceeded();
        tokio::pin!(deadline, exceeded);
        let socket = &mut self.socket;
        let heard = &mut self.heard;
        let waited = std::future::poll_fn(|cx| {
            if let Poll::Ready(flushed) = Pin::new(&mut *socket).poll_flush(cx) {
                return Poll::Ready(flushed.map_err(|_| End::Gone).map(|()| true));
            }
            if exceeded.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(OVER_BUDGET));
            }
            while heard.is_none() {
                match Pin::new(&mut *socket).poll_next(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                    Poll::Ready(Some(Ok(Message::Close(_)))) | Poll::Ready(None) => {
                        return Poll::Ready(Err(End::Gone))
                    }
                    Poll::Ready(Some(Err(error))) => {
                        return Poll::Ready(Err(End::from_read_error(error)))
                    }
                    Poll::Ready(Some(Ok(message))) => {
                        *heard = Some(message);
                        return Poll::Ready(Ok(false));
                    }
                }
            }
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(WRITE_TIMED_OUT));
            }
            Poll::Pending
        })
        .await?;
        if waited {
            self.flushed()
        } else {
            Ok(())
        }
    }
}

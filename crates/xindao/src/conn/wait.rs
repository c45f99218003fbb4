//! A connection's wait for its next event, and which of its wake-ups was a push: so that a push polls the
//! push queue alone.
//!
//! A connection waits on four things at once: server shutdown, its push queue, its socket and its heartbeat
//! timer. Its shard polls it with one waker, so a wake-up does not say which of them fired, and a plain
//! `select!` polls all four (and again after the push is written). In a broadcast nearly every wake-up is a
//! push, and the three others cost more than the push's own hand-over (the socket's readiness lock, the
//! timer and the cancellation token: about 8% of the server's CPU in a room of 1,000, see
//! `docs/decisions/quiet-wakeups.md`). So the three others are polled with a waker of their own, this flag's,
//! which records that one of them fired before it wakes the connection; while it is clear, a wake-up came
//! from the push queue (or from a yield) and only the queue needs polling.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use futures_util::Stream;
use tokio::time::Interval;
use tokio_util::sync::WaitForCancellationFuture;
use tungstenite::Message;

use super::socket::Conn;
use crate::hub::Outbound;

/// What a connection waited for, in the order it is looked at.
pub(super) enum Event {
    /// The server is shutting down.
    Shutdown,
    /// A push (`None`: the hub dropped the queue's sender, the connection was evicted).
    Push(Option<Outbound>),
    /// The client sent a frame, or the stream ended.
    Incoming(Option<Result<Message, tungstenite::Error>>),
    /// The heartbeat timer.
    Tick,
}

/// Waits for shutdown, a push, a frame from the client or the heartbeat, in that order of preference (a
/// biased `select!`), polling only the push queue when `flag` says nothing else fired.
pub(super) async fn next_event(
    conn: &mut Conn,
    flag: &WakeFlag,
    mut shutdown: Pin<&mut WaitForCancellationFuture<'_>>,
    heartbeat: &mut Interval,
) -> Event {
    std::future::poll_fn(|cx| {
        // Running: no push writes the socket until this poll parks the connection again.
        conn.queue.busy();
        let others = flag.take(cx);
        // Whatever is returned before every other wait was polled leaves the flag set for the next time.
        let ready = |event| {
            flag.set();
            Poll::Ready(event)
        };
        if others && shutdown.as_mut().poll(&mut flag.context()).is_ready() {
            return ready(Event::Shutdown);
        }
        if let Poll::Ready(outbound) = conn.queue.poll_recv(cx) {
            if others {
                flag.set();
            }
            return Poll::Ready(Event::Push(outbound));
        }
        if !others {
            conn.park();
            return Poll::Pending;
        }
        if let Poll::Ready(incoming) = Pin::new(&mut conn.socket).poll_next(&mut flag.context()) {
            return ready(Event::Incoming(incoming));
        }
        if heartbeat.poll_tick(&mut flag.context()).is_ready() {
            return ready(Event::Tick);
        }
        conn.park();
        Poll::Pending
    })
    .await
}

/// Set when something other than the push queue may have woken the connection.
struct Flag {
    woken: AtomicBool,
    connection: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Set before waking, so that the woken connection sees it.
        self.woken.store(true, Ordering::Release);
        self.connection.wake();
    }
}

/// The waker the connection's other waits are polled with, and whether it fired since they were last polled.
pub(super) struct WakeFlag {
    flag: Arc<Flag>,
    waker: Waker,
}

impl WakeFlag {
    /// A flag that is set: the first wait polls everything.
    pub(super) fn new() -> WakeFlag {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            connection: AtomicWaker::new(),
        });
        WakeFlag {
            waker: Waker::from(flag.clone()),
            flag,
        }
    }

    /// Clears the flag and returns whether it was set; when it was, `cx`'s waker is the one it wakes from now
    /// on, and the caller must poll every other wait again with [`WakeFlag::context`] (or [`WakeFlag::set`]
    /// it for the next time).
    pub(super) fn take(&self, cx: &Context<'_>) -> bool {
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return false;
        }
        self.flag.connection.register(cx.waker());
        true
    }

    /// Marks the other waits as due for polling: after they were polled with another waker, or were not all
    /// polled after [`WakeFlag::take`].
    pub(super) fn set(&self) {
        self.flag.woken.store(true, Ordering::Release);
    }

    /// A context whose waker sets the flag and then wakes the connection.
    pub(super) fn context(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wake_through_the_flag_sets_it_and_wakes_the_connection() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let cx = Context::from_waker(&waker);
        let flag = WakeFlag::new();
        assert!(
            flag.take(&cx),
            "a new flag is set: the first wait polls everything"
        );
        assert!(!flag.take(&cx), "taking clears it");
        flag.context().waker().wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(flag.take(&cx));
        flag.set();
        assert!(flag.take(&cx));
        assert!(!flag.take(&cx));
    }
}

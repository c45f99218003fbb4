//! Connection shards: the connections of this node in as many groups as the runtime has workers, each group
//! run by one task that owns its connections' sockets.
//!
//! A connection is one future (`connection::run`) that reads and writes its socket; what changes is who
//! polls it. Every connection used to be its own runtime task, so a broadcast to R recipients cost R task
//! wake-ups: R pushes onto the runtime's run queues, R task polls, and a parked worker woken for them. A shard
//! polls its connections as one task (a [`FuturesUnordered`]), and it writes pushes itself to those that are
//! parked with nothing unsent, without waking them (`hub::direct`): a push to such a connection lists its
//! queue on the shard's [`DirectWrites`], the shard task is woken once however many of its connections a
//! delivery reaches, and writes to each in turn. So a delivery costs one runtime wake-up per shard (at most
//! one per worker), not one per recipient, and one `writev` per recipient; the hub still hands each
//! recipient the frame encoded once (a reference count), into the recipient's bounded queue.
//!
//! The shards are picked round-robin as connections open. One code path for every worker count (a runtime
//! with one worker has one shard). A connection runs outside tokio's cooperative budget (one budget for a
//! whole shard ran out part-way through a broadcast, and each connection after that point took its write for
//! a stalled socket: a timer and a retry each); instead each connection yields every few turns of its loop
//! (`Conn::turn`), so a client that keeps its socket full cannot hold up the rest of its shard. A connection
//! that panics ends alone (its panic is caught and logged), as a task's would.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;

use crate::hub::direct::DirectWrites;

type ConnFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One shard as the rest of the node sees it: where its new connections go, and its list of parked
/// connections with pushes to write.
struct Shard {
    opened: mpsc::UnboundedSender<ConnFuture>,
    direct: Arc<DirectWrites>,
}

/// The node's connection shards. Dropping it lets each shard end once its connections have.
pub struct Shards {
    shards: Vec<Shard>,
    next: AtomicUsize,
}

/// The shard a connection is given ([`Shards::pick`]).
pub struct Picked {
    index: usize,
    /// The shard's list of parked connections to write (`hub::direct`).
    pub direct: Arc<DirectWrites>,
}

impl Shards {
    /// Starts one shard per worker of the current runtime.
    pub fn start() -> Shards {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        Shards::with(workers)
    }

    /// Starts `count` shards (at least one) on the current runtime.
    pub fn with(count: usize) -> Shards {
        let shards = (0..count.max(1))
            .map(|_| {
                let (opened, rx) = mpsc::unbounded_channel();
                let direct = Arc::new(DirectWrites::default());
                tokio::spawn(run(rx, direct.clone()));
                Shard { opened, direct }
            })
            .collect();
        Shards {
            shards,
            next: AtomicUsize::new(0),
        }
    }

    /// How many shards there are.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether there are no shards (never: there is at least one).
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The shard for the next connection, round-robin.
    pub fn pick(&self) -> Picked {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        Picked {
            index,
            direct: self.shards[index].direct.clone(),
        }
    }

    /// Runs a connection in the next shard.
    pub fn run(&self, connection: impl Future<Output = ()> + Send + 'static) {
        self.run_in(self.pick(), connection)
    }

    /// Runs a connection in the shard `picked`.
    pub fn run_in(&self, picked: Picked, connection: impl Future<Output = ()> + Send + 'static) {
        // Outside tokio's budget: a budget shared by a whole shard would run out part-way through a
        // broadcast and make the rest of its connections' writes look stalled (a timer and a retry each).
        // Each connection yields on its own instead (`Conn::turn`).
        let connection = tokio::task::unconstrained(connection);
        let connection: ConnFuture =
            Box::pin(AssertUnwindSafe(connection).catch_unwind().map(|outcome| {
                if outcome.is_err() {
                    tracing::error!("a connection panicked; it is closed");
                }
            }));
        if let Err(refused) = self.shards[picked.index].opened.send(connection) {
            // The shard is gone (the runtime is shutting down): run the connection on its own.
            tokio::spawn(refused.0);
        }
    }
}

/// One shard: polls its connections and writes for the parked ones, until the sender is gone and every
/// connection has ended.
async fn run(mut opened: mpsc::UnboundedReceiver<ConnFuture>, direct: Arc<DirectWrites>) {
    let mut connections = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = connections.next(), if !connections.is_empty() => {}
            () = direct.write_listed() => {}
            connection = opened.recv() => match connection {
                Some(connection) => connections.push(connection),
                None => break,
            },
        }
    }
    while connections.next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::{oneshot, Notify};

    /// Connections in one shard make progress independently: one waiting forever holds up no other.
    #[tokio::test]
    async fn connections_of_one_shard_run_side_by_side() {
        let shards = Shards::with(1);
        let stuck = Arc::new(Notify::new());
        let waiting = stuck.clone();
        shards.run(async move { waiting.notified().await });
        let mut done = Vec::new();
        for _ in 0..100 {
            let (tx, rx) = oneshot::channel();
            shards.run(async move {
                tokio::task::yield_now().await;
                let _ = tx.send(());
            });
            done.push(rx);
        }
        for rx in done {
            tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .expect("every connection ran")
                .unwrap();
        }
        stuck.notify_one();
    }

    /// A connection that panics ends alone; its shard keeps running the others and takes new ones.
    #[tokio::test]
    async fn a_panicking_connection_ends_alone() {
        let shards = Shards::with(1);
        let (tx, rx) = oneshot::channel::<()>();
        let (survived_tx, survived) = oneshot::channel();
        shards.run(async move {
            let _ = rx.await;
            let _ = survived_tx.send(());
        });
        shards.run(async { panic!("a bug in one connection") });
        tokio::task::yield_now().await;
        let _ = tx.send(());
        tokio::time::timeout(Duration::from_secs(5), survived)
            .await
            .expect("the other connection still ran")
            .unwrap();
        let (late_tx, late) = oneshot::channel();
        shards.run(async move {
            let _ = late_tx.send(());
        });
        tokio::time::timeout(Duration::from_secs(5), late)
            .await
            .expect("a new connection runs after the panic")
            .unwrap();
    }

    /// One shard per worker; connections are spread round-robin.
    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn one_shard_per_worker() {
        assert_eq!(Shards::start().len(), 3);
    }
}

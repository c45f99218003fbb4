//! Fan-out: turns each committed message into a `message` push for the conversation's members.
//!
//! The store's writers only commit: they hand every committed batch to this task through a bounded channel
//! (the [`CommitSink`]) before they answer the batch's senders, so a client never holds an ack whose push has
//! not been handed over. This task runs on the runtime, takes the batches in commit order, encodes each
//! message's push once for its sender's other connections (with the `cmid`) and once for everyone else
//! (without: [`protocol::push`]) and publishes both in one delivery on the bus (which delivers locally through the
//! hub and, on a cluster bus, to the other nodes). The sending connection is skipped: it has the ack.
//!
//! Each message's publish is a `fanout` span, the child of its send's `commit` span when traces are exported
//! ([`crate::obs::otel`]).
//!
//! When an endpoint takes `user.offline_message`, each committed message is also queued (never waiting) for the
//! offline check ([`crate::webhooks::offline`]).
//!
//! It ends when every sender of the channel is gone, i.e. once the store has shut down and committed what it
//! accepted; the server then shuts the bus down, so the last commits' pushes still go out.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::order::Order;
use crate::bus::Bus;
use crate::hub::{Delivery, OwnFrame};
use crate::metrics::Metrics;
use crate::obs::request_id::{self, RequestId};
use crate::protocol;
use crate::store::{CommitSink, Committed};
use crate::webhooks::offline::OfflineNotices;

/// Committed batches the store may hand over before its writers wait for fan-out to catch up.
const COMMIT_QUEUE: usize = 1024;

/// The channel between the store's writers and fan-out, and the order that keeps the chat service's own
/// publishes behind it ([`super::order`]).
pub fn channel() -> (CommitSink, mpsc::Receiver<Vec<Committed>>, Arc<Order>) {
    let (tx, rx) = mpsc::channel(COMMIT_QUEUE);
    let order = Arc::new(Order::default());
    (CommitSink::counted(tx, order.handed.clone()), rx, order)
}

/// Spawns the fan-out task on the current runtime; it ends once every sender of `commits` is gone and the
/// channel is drained.
pub fn spawn(
    commits: mpsc::Receiver<Vec<Committed>>,
    bus: Arc<dyn Bus>,
    order: Arc<Order>,
    metrics: Metrics,
    offline: Option<OfflineNotices>,
) -> JoinHandle<()> {
    tokio::spawn(run(commits, bus, order, metrics, offline))
}

async fn run(
    mut commits: mpsc::Receiver<Vec<Committed>>,
    bus: Arc<dyn Bus>,
    order: Arc<Order>,
    metrics: Metrics,
    offline: Option<OfflineNotices>,
) {
    let mut count = 0;
    while let Some(batch) = commits.recv().await {
        count += 1;
        for Committed {
            message,
            origin,
            request_id,
            trace,
        } in batch
        {
            metrics.messages_committed.inc();
            let started = std::time::Instant::now();
            let frames = protocol::push::message_frames(&message);
            let delivery = Delivery::Conversation {
                conversation_id: message.conversation_id,
                frame: frames.others,
                own: Some(OwnFrame {
                    user_id: message.sender_id,
                    frame: frames.sender,
                }),
                skip_conn: origin,
                skip_user: 0,
            };
            // As part of the request that sent it: its id (and, when traces are exported, this span's
            // trace context) goes into the bus envelope.
            let span = tracing::debug_span!(parent: None, "fanout", seq = message.seq);
            trace.adopt(&span);
            span.in_scope(|| {
                request_id::sync_scope(request_id.map(RequestId), || bus.publish(delivery))
            });
            crate::obs::hops::observe(&crate::obs::hops::hops().fanout, started.elapsed());
            if let Some(offline) = &offline {
                offline.observe(&message);
            }
        }
        order.delivered(&*bus, count);
    }
    order.close(&*bus);
}

//! The cluster bus: several xindao nodes behind a load balancer, sharing a store and exchanging deliveries
//! over Redis pub/sub (`redis.rs`) or NATS (`nats.rs`).
//!
//! Every node delivers to its own connections directly and publishes the same delivery, tagged with its node
//! id, for the others; it ignores its own echo. Presence is kept from announcements: each node says when a
//! user's first connection opens or last one closes, and sends a snapshot of its online users as a
//! heartbeat every third of `presence_ttl_ms`; a node not heard from for that long is gone, with its users.
//! When the bus connection drops, pushes may be missed: after resubscribing, the node tells every local
//! connection to `resync` (they `sync` from the store, which holds everything committed), and a node that
//! could not publish something asks every node to do the same.
//!
//! Nothing from the bus is trusted: every envelope is sealed under the shared `cluster_secret` and checked
//! for freshness and replay (`cluster/auth.rs`) before it is applied.

mod auth;
mod nats;
mod presence;
mod redis;
mod rejected;
mod replay;
mod wire;
#[cfg(test)]
mod wire_props;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{presence_frame, Bus};
use crate::config::{mask_url, BusConfig, Config, CLUSTER_SECRET_MIN};
use crate::error::{Error, Result};
use crate::hub::{Delivery, Hub};
use crate::model::UserId;
use crate::protocol;
use auth::Gate;
use presence::{heartbeat, RemoteNode, Update};
use wire::{Envelope, Wire};

pub use auth::{MAX_ENVELOPE_BYTES, REPLAY_WINDOW};

/// Encoded messages waiting for the publisher; past this, publishing fails and the cluster resyncs.
const PUBLISH_QUEUE: usize = 16 * 1024;
/// Users per presence snapshot envelope (about 20 bytes each): bigger snapshots travel in chunks.
pub const SNAPSHOT_CHUNK: usize = 16 * 1024;
/// Most users one remote node's snapshot may name; the rest are ignored (with a warning).
pub const SNAPSHOT_MAX_USERS: usize = 256 * 1024;

/// The log target of the line for each envelope received that a request caused (debug level).
pub const RECEIVED: &str = "xindao::bus::received";

/// What the Redis and NATS transports share: encoding, own-echo filtering, presence and resync.
pub(crate) struct Core {
    gate: Gate,
    hub: Arc<Hub>,
    ttl: Duration,
    remote: Mutex<HashMap<String, RemoteNode>>,
    out: mpsc::Sender<Vec<u8>>,
    /// Something was not published (queue full, or sent while the connection was down).
    lost: AtomicBool,
    /// Whether the transport believes its connection is up.
    connected: AtomicBool,
    /// Keeps the chunks of one snapshot together in the queue.
    snapshot_lock: Mutex<()>,
}

impl Core {
    fn send(&self, body: Wire) {
        let Some(bytes) = self.gate.seal(body) else {
            self.lost.store(true, Ordering::Relaxed);
            return;
        };
        if self.out.try_send(bytes).is_err() && !self.lost.swap(true, Ordering::Relaxed) {
            tracing::warn!("cluster publish queue full: other nodes will be told to resync");
        }
    }

    /// Handles one message from the bus. One that a request caused is handled in a span naming the request,
    /// so every line logged about it here carries the id the sending node logged; when traces are exported,
    /// that span continues the sender's trace (the envelope's `traceparent`).
    pub(crate) fn receive(&self, payload: &[u8]) {
        let Some(mut envelope) = self.gate.open(payload) else {
            return;
        };
        match envelope.request_id.take() {
            Some(id) if crate::obs::request_id::sane(&id) => {
                let span = tracing::info_span!("bus", from = %envelope.node, request_id = %id);
                if let Some(traceparent) = envelope.traceparent.take() {
                    crate::obs::otel::adopt_traceparent(&span, &traceparent);
                }
                span.in_scope(|| {
                    tracing::debug!(target: RECEIVED, "bus envelope received");
                    self.apply(envelope);
                });
            }
            _ => self.apply(envelope),
        }
    }

    fn apply(&self, envelope: Envelope) {
        let wire = match envelope.body.into_delivery() {
            Ok(delivery) => return self.hub.deliver(&delivery),
            Err(wire) => wire,
        };
        match wire {
            Wire::Presence { user_id, online } => {
                self.update_node(&envelope.node, Update::One(user_id, online))
            }
            Wire::Snapshot { users, more } => self.snapshot_chunk(&envelope.node, users, more),
            Wire::Hello => {
                self.update_node(&envelope.node, Update::Touch);
                self.send_snapshot();
            }
            Wire::Bye => self.drop_nodes(|node, _| node == envelope.node),
            Wire::Resync => self.resync_local("another node missed publishing"),
            _ => {}
        }
    }

    fn resync_local(&self, reason: &str) {
        tracing::info!(reason, "telling every local connection to resync");
        self.hub
            .broadcast(&protocol::event("resync", &json!({ "reason": reason })));
    }

    /// The subscription is (again) active. After a reconnect, pushes may have been missed meanwhile.
    pub(crate) fn subscribed(&self, reconnected: bool) {
        self.connected.store(true, Ordering::Relaxed);
        if reconnected {
            self.resync_local("cluster bus reconnected");
        }
        self.send(Wire::Hello);
        self.send_snapshot();
    }

    /// The transport lost its connection: what is published now may not arrive.
    pub(crate) fn disconnected(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }

    /// The publisher could send again; if anything may have been lost, every node resyncs.
    pub(crate) fn publisher_recovered(&self) {
        if self.lost.swap(false, Ordering::Relaxed) {
            self.send(Wire::Resync);
        }
    }

    /// The publisher is about to send while the connection may be down.
    pub(crate) fn note_possible_loss(&self) {
        if !self.connected.load(Ordering::Relaxed) {
            self.lost.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn mark_lost(&self) {
        self.lost.store(true, Ordering::Relaxed);
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// A [`Bus`] spanning every node subscribed to the same channel.
pub struct ClusterBus {
    core: Arc<Core>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// Connects to the bus `config.bus` names (`redis://`, `rediss://`, `nats://` or `tls://`) and starts its
/// tasks. Refuses without a `cluster_secret` of at least [`CLUSTER_SECRET_MIN`] bytes.
pub async fn open(config: &Config, hub: Arc<Hub>) -> Result<Arc<dyn Bus>> {
    let secret = match &config.cluster_secret {
        Some(secret) if secret.as_str().len() >= CLUSTER_SECRET_MIN => secret.as_str().as_bytes(),
        _ => {
            return Err(Error::Unavailable(format!(
                "a cluster bus needs cluster_secret (XINDAO_CLUSTER_SECRET): at least \
                 {CLUSTER_SECRET_MIN} bytes, the same on every node"
            )))
        }
    };
    let node = match &config.node_id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => format!("{:016x}", rand::random::<u64>()),
    };
    let (out, outgoing) = mpsc::channel(PUBLISH_QUEUE);
    let core = Arc::new(Core {
        gate: Gate::new(node.clone(), secret, hub.metrics().clone()),
        hub,
        ttl: Duration::from_millis(config.presence_ttl_ms),
        remote: Mutex::new(HashMap::new()),
        out,
        lost: AtomicBool::new(false),
        connected: AtomicBool::new(false),
        snapshot_lock: Mutex::new(()),
    });
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let channel = config.bus_channel.clone();
    let shown = mask_url(&String::from(config.bus.clone()));
    match &config.bus {
        BusConfig::Redis { url } => {
            redis::start(
                url,
                &shown,
                channel,
                core.clone(),
                outgoing,
                &cancel,
                &tasks,
            )
            .await?
        }
        BusConfig::Nats { url } => {
            let nats = nats::Target {
                url,
                shown: &shown,
                creds: config.nats_creds_file.as_deref(),
            };
            nats::start(nats, channel, core.clone(), outgoing, &cancel, &tasks).await?
        }
        BusConfig::Local => {
            return Err(Error::Unavailable(
                "a cluster needs a redis:// or nats:// bus".into(),
            ))
        }
    }
    tasks.spawn(heartbeat(core.clone(), cancel.clone()));
    tracing::info!(node = %node, bus = %shown, "joined the cluster bus");
    Ok(Arc::new(ClusterBus {
        core,
        cancel,
        tasks,
    }))
}

#[async_trait]
impl Bus for ClusterBus {
    fn publish(&self, delivery: Delivery) {
        self.core.hub.deliver(&delivery);
        if let Some(wire) = Wire::from_delivery(&delivery) {
            self.core.send(wire);
        }
    }

    fn local_presence(&self, user_id: UserId, online: bool) {
        if !self.core.remote_has(user_id) {
            let frame = presence_frame(user_id, online);
            self.core
                .hub
                .deliver(&Delivery::Watchers { user_id, frame });
        }
        self.core.send(Wire::Presence { user_id, online });
    }

    fn is_online(&self, user_id: UserId) -> bool {
        self.core.hub.is_online(user_id) || self.core.remote_has(user_id)
    }

    fn connected(&self) -> bool {
        self.core.connected.load(Ordering::Relaxed)
    }

    async fn shutdown(&self) {
        self.core.send(Wire::Bye);
        // Give the publisher a moment to send what is queued (the Bye included).
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.core.out.capacity() < self.core.out.max_capacity() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The last batch left the queue; let it reach the wire.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.cancel.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
    }
}

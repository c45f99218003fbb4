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

mod nats;
mod redis;
mod wire;
#[cfg(test)]
mod wire_props;

use std::collections::{HashMap, HashSet};
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
use crate::config::{BusConfig, Config};
use crate::error::{Error, Result};
use crate::hub::{Delivery, Hub};
use crate::model::UserId;
use crate::protocol;
use wire::{Envelope, Wire};

/// Encoded messages waiting for the publisher; past this, publishing fails and the cluster resyncs.
const PUBLISH_QUEUE: usize = 16 * 1024;

struct RemoteNode {
    seen: Instant,
    users: HashSet<UserId>,
}

/// A change to what one remote node says about its users.
enum Update {
    One(UserId, bool),
    All(HashSet<UserId>),
    Touch,
}

/// What the Redis and NATS transports share: encoding, own-echo filtering, presence and resync.
pub(crate) struct Core {
    node: String,
    hub: Arc<Hub>,
    ttl: Duration,
    remote: Mutex<HashMap<String, RemoteNode>>,
    out: mpsc::Sender<Vec<u8>>,
    /// Something was not published (queue full, or sent while the connection was down).
    lost: AtomicBool,
    /// Whether the transport believes its connection is up.
    connected: AtomicBool,
}

impl Core {
    fn send(&self, body: Wire) {
        let envelope = Envelope {
            node: self.node.clone(),
            body,
        };
        let Ok(bytes) = serde_json::to_vec(&envelope) else {
            return;
        };
        if self.out.try_send(bytes).is_err() && !self.lost.swap(true, Ordering::Relaxed) {
            tracing::warn!("cluster publish queue full: other nodes will be told to resync");
        }
    }

    fn remote_has(&self, user: UserId) -> bool {
        self.remote.lock().values().any(|n| n.users.contains(&user))
    }

    /// Handles one message from the bus.
    pub(crate) fn receive(&self, payload: &[u8]) {
        let envelope: Envelope = match serde_json::from_slice(payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(%error, "unreadable cluster message ignored");
                return;
            }
        };
        if envelope.node == self.node {
            return;
        }
        let wire = match envelope.body.into_delivery() {
            Ok(delivery) => return self.hub.deliver(&delivery),
            Err(wire) => wire,
        };
        match wire {
            Wire::Presence { user_id, online } => {
                self.update_node(&envelope.node, Update::One(user_id, online))
            }
            Wire::Snapshot { users } => {
                self.update_node(&envelope.node, Update::All(users.into_iter().collect()))
            }
            Wire::Hello => {
                self.update_node(&envelope.node, Update::Touch);
                self.send_snapshot();
            }
            Wire::Bye => self.drop_nodes(|node, _| node == envelope.node),
            Wire::Resync => self.resync_local("another node missed publishing"),
            _ => {}
        }
    }

    /// Applies an update to a node's user set and tells watchers about users whose cluster-wide presence
    /// flipped (those not online here nor on a third node).
    fn update_node(&self, node: &str, update: Update) {
        let flipped: Vec<(UserId, bool)> = {
            let mut remote = self.remote.lock();
            let entry = remote.entry(node.to_owned()).or_insert_with(|| RemoteNode {
                seen: Instant::now(),
                users: HashSet::new(),
            });
            entry.seen = Instant::now();
            let changed: Vec<(UserId, bool)> = match update {
                Update::One(user, true) if entry.users.insert(user) => vec![(user, true)],
                Update::One(user, false) if entry.users.remove(&user) => vec![(user, false)],
                Update::One(..) | Update::Touch => Vec::new(),
                Update::All(users) => {
                    let changed = users
                        .difference(&entry.users)
                        .map(|&u| (u, true))
                        .chain(entry.users.difference(&users).map(|&u| (u, false)))
                        .collect();
                    entry.users = users;
                    changed
                }
            };
            changed
                .into_iter()
                .filter(|&(user, _)| {
                    !self.hub.is_online(user)
                        && !remote
                            .iter()
                            .any(|(n, r)| n != node && r.users.contains(&user))
                })
                .collect()
        };
        self.notify(flipped);
    }

    /// Forgets nodes for which `gone` holds; their users go offline unless seen elsewhere.
    fn drop_nodes(&self, gone: impl Fn(&str, &RemoteNode) -> bool) {
        let flipped: Vec<(UserId, bool)> = {
            let mut remote = self.remote.lock();
            let names: Vec<String> = remote
                .iter()
                .filter(|(name, node)| gone(name, node))
                .map(|(name, _)| name.clone())
                .collect();
            let mut users = HashSet::new();
            for name in names {
                tracing::info!(node = %name, "cluster node gone");
                if let Some(node) = remote.remove(&name) {
                    users.extend(node.users);
                }
            }
            users
                .into_iter()
                .filter(|&u| {
                    !self.hub.is_online(u) && !remote.values().any(|r| r.users.contains(&u))
                })
                .map(|u| (u, false))
                .collect()
        };
        self.notify(flipped);
    }

    fn notify(&self, flipped: Vec<(UserId, bool)>) {
        for (user_id, online) in flipped {
            let frame = presence_frame(user_id, online);
            self.hub.deliver(&Delivery::Watchers { user_id, frame });
        }
    }

    fn send_snapshot(&self) {
        self.send(Wire::Snapshot {
            users: self.hub.local_users(),
        });
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

/// Connects to the bus `config.bus` names (`redis://` or `nats://`) and starts its tasks.
pub async fn open(config: &Config, hub: Arc<Hub>) -> Result<Arc<dyn Bus>> {
    let node = match &config.node_id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => format!("{:016x}", rand::random::<u64>()),
    };
    let (out, outgoing) = mpsc::channel(PUBLISH_QUEUE);
    let core = Arc::new(Core {
        node: node.clone(),
        hub,
        ttl: Duration::from_millis(config.presence_ttl_ms),
        remote: Mutex::new(HashMap::new()),
        out,
        lost: AtomicBool::new(false),
        connected: AtomicBool::new(false),
    });
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let channel = config.bus_channel.clone();
    match &config.bus {
        BusConfig::Redis { url } => {
            redis::start(url, channel, core.clone(), outgoing, &cancel, &tasks).await?
        }
        BusConfig::Nats { url } => {
            nats::start(url, channel, core.clone(), outgoing, &cancel, &tasks).await?
        }
        BusConfig::Local => {
            return Err(Error::Unavailable(
                "a cluster needs a redis:// or nats:// bus".into(),
            ))
        }
    }
    tasks.spawn(heartbeat(core.clone(), cancel.clone()));
    tracing::info!(node = %node, bus = %config.bus, "joined the cluster bus");
    Ok(Arc::new(ClusterBus {
        core,
        cancel,
        tasks,
    }))
}

/// Sends this node's snapshot and forgets silent nodes, every third of the presence TTL.
async fn heartbeat(core: Arc<Core>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(core.ttl / 3);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                core.send_snapshot();
                let ttl = core.ttl;
                core.drop_nodes(|_, node| node.seen.elapsed() > ttl);
            }
        }
    }
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

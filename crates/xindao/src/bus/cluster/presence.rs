//! Cluster presence: which users each remote node says are online, from its announcements and chunked
//! snapshots, and the heartbeat that sends this node's snapshot and forgets silent nodes. Kept apart from
//! `mod.rs`, which carries deliveries and resyncs between the nodes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::wire::Wire;
use super::{Core, SNAPSHOT_CHUNK, SNAPSHOT_MAX_USERS};
use crate::bus::presence_frame;
use crate::hub::Delivery;
use crate::model::UserId;

pub(super) struct RemoteNode {
    pub(super) seen: Instant,
    pub(super) users: HashSet<UserId>,
    /// The chunks of a snapshot still arriving.
    pending: HashSet<UserId>,
}

/// A change to what one remote node says about its users.
pub(super) enum Update {
    One(UserId, bool),
    All(HashSet<UserId>),
    Touch,
}

impl Core {
    pub(super) fn remote_has(&self, user: UserId) -> bool {
        self.remote.lock().values().any(|n| n.users.contains(&user))
    }

    /// Gathers a snapshot's chunks; the last one replaces the node's user set.
    pub(super) fn snapshot_chunk(&self, node: &str, users: Vec<UserId>, more: bool) {
        let complete = {
            let mut remote = self.remote.lock();
            let entry = remote
                .entry(node.to_owned())
                .or_insert_with(RemoteNode::new);
            entry.seen = Instant::now();
            let room = SNAPSHOT_MAX_USERS.saturating_sub(entry.pending.len());
            if users.len() > room {
                tracing::warn!(
                    node,
                    "snapshot names over {SNAPSHOT_MAX_USERS} users: the rest are ignored"
                );
            }
            entry.pending.extend(users.into_iter().take(room));
            (!more).then(|| std::mem::take(&mut entry.pending))
        };
        if let Some(users) = complete {
            self.update_node(node, Update::All(users));
        }
    }

    /// Applies an update to a node's user set and tells watchers about users whose cluster-wide presence
    /// flipped (those not online here nor on a third node).
    pub(super) fn update_node(&self, node: &str, update: Update) {
        let flipped: Vec<(UserId, bool)> = {
            let mut remote = self.remote.lock();
            let entry = remote
                .entry(node.to_owned())
                .or_insert_with(RemoteNode::new);
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
    pub(super) fn drop_nodes(&self, gone: impl Fn(&str, &RemoteNode) -> bool) {
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

    pub(super) fn notify(&self, flipped: Vec<(UserId, bool)>) {
        for (user_id, online) in flipped {
            let frame = presence_frame(user_id, online);
            self.hub.deliver(&Delivery::Watchers { user_id, frame });
        }
    }

    pub(super) fn send_snapshot(&self) {
        let users = self.hub.local_users();
        let _together = self.snapshot_lock.lock();
        let mut chunks = users.chunks(SNAPSHOT_CHUNK).peekable();
        if chunks.peek().is_none() {
            return self.send(Wire::Snapshot {
                users: Vec::new(),
                more: false,
            });
        }
        while let Some(chunk) = chunks.next() {
            self.send(Wire::Snapshot {
                users: chunk.to_vec(),
                more: chunks.peek().is_some(),
            });
        }
    }
}

impl RemoteNode {
    fn new() -> RemoteNode {
        RemoteNode {
            seen: Instant::now(),
            users: HashSet::new(),
            pending: HashSet::new(),
        }
    }
}

/// Sends this node's snapshot and forgets silent nodes, every third of the presence TTL.
pub(super) async fn heartbeat(core: Arc<Core>, cancel: CancellationToken) {
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

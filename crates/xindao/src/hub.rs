//! The hub: this node's registry of open connections, and local delivery of pushes to them.
//!
//! The hub knows which local users are online, which conversations they are members of (loaded at connect
//! and kept current by membership deliveries) and who watches whose presence. Delivering never waits: each
//! connection has a bounded queue, and a connection whose queue is full is evicted as a slow consumer (its
//! task then closes it with 4009 and the client resyncs from the store). Frames are encoded once and shared.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::model::{ConversationId, UserId};

/// Identifies one WebSocket connection on this node.
pub type ConnId = u64;

/// What the hub hands to a connection's task.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A push, already encoded.
    Frame(Utf8Bytes),
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

/// A local delivery. Everything that reaches connections goes through one of these, so that a bus can carry
/// the same value between nodes.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// To every local connection of every member of the conversation, except `skip_conn` and `skip_user`.
    Conversation {
        conversation_id: ConversationId,
        frame: Utf8Bytes,
        skip_conn: ConnId,
        skip_user: UserId,
    },
    /// To every local connection of one user.
    User { user_id: UserId, frame: Utf8Bytes },
    /// To the connections watching this user's presence.
    Watchers { user_id: UserId, frame: Utf8Bytes },
    /// Membership changed: route (or stop routing) the conversation's pushes to this user.
    Membership {
        conversation_id: ConversationId,
        user_id: UserId,
        member: bool,
    },
    /// Close every connection opened with this session (logout).
    EndSession { token_hash: [u8; 32] },
}

struct ConnSlot {
    id: ConnId,
    tx: mpsc::Sender<Outbound>,
    token_hash: [u8; 32],
    watching: Vec<UserId>,
}

#[derive(Default)]
struct UserEntry {
    conns: Vec<ConnSlot>,
    conversations: HashSet<ConversationId>,
}

#[derive(Default)]
struct State {
    users: HashMap<UserId, UserEntry>,
    /// Conversation -> its members that are online on this node.
    conversations: HashMap<ConversationId, HashSet<UserId>>,
    /// Watched user -> connections watching them, with the watcher's user id.
    watchers: HashMap<UserId, HashMap<ConnId, UserId>>,
}

/// The node-local connection registry. Cheap to share behind an `Arc`.
pub struct Hub {
    state: RwLock<State>,
    next_id: AtomicU64,
    metrics: Metrics,
}

/// The result of registering a connection.
pub struct Registered {
    pub conn_id: ConnId,
    /// True when this is the user's first connection on this node.
    pub first_of_user: bool,
}

impl Hub {
    pub fn new(metrics: Metrics) -> Hub {
        Hub {
            state: RwLock::new(State::default()),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    /// Open connections of `user` on this node.
    pub fn connections_of(&self, user: UserId) -> usize {
        self.state
            .read()
            .users
            .get(&user)
            .map_or(0, |entry| entry.conns.len())
    }

    /// Whether `user` has a connection on this node.
    pub fn is_online(&self, user: UserId) -> bool {
        self.connections_of(user) > 0
    }

    /// Registers a connection of `user`, a member of `conversations`, that receives pushes through `tx`.
    pub fn register(
        &self,
        user: UserId,
        token_hash: [u8; 32],
        conversations: &[ConversationId],
        tx: mpsc::Sender<Outbound>,
    ) -> Registered {
        let conn_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.write();
        let state = &mut *state;
        let entry = state.users.entry(user).or_default();
        let first_of_user = entry.conns.is_empty();
        entry.conns.push(ConnSlot {
            id: conn_id,
            tx,
            token_hash,
            watching: Vec::new(),
        });
        for &conversation in conversations {
            entry.conversations.insert(conversation);
            state
                .conversations
                .entry(conversation)
                .or_default()
                .insert(user);
        }
        Registered {
            conn_id,
            first_of_user,
        }
    }

    /// Removes a connection (idempotent). Returns true when it was the user's last one on this node.
    pub fn unregister(&self, user: UserId, conn_id: ConnId) -> bool {
        let mut state = self.state.write();
        Self::remove_conn(&mut state, user, conn_id)
    }

    fn remove_conn(state: &mut State, user: UserId, conn_id: ConnId) -> bool {
        let Some(entry) = state.users.get_mut(&user) else {
            return false;
        };
        let Some(position) = entry.conns.iter().position(|slot| slot.id == conn_id) else {
            return false;
        };
        let slot = entry.conns.swap_remove(position);
        for watched in slot.watching {
            if let Some(set) = state.watchers.get_mut(&watched) {
                set.remove(&conn_id);
                if set.is_empty() {
                    state.watchers.remove(&watched);
                }
            }
        }
        if !entry.conns.is_empty() {
            return false;
        }
        let entry = state.users.remove(&user).unwrap_or_default();
        for conversation in entry.conversations {
            if let Some(set) = state.conversations.get_mut(&conversation) {
                set.remove(&user);
                if set.is_empty() {
                    state.conversations.remove(&conversation);
                }
            }
        }
        true
    }

    /// Replaces the set of users whose presence this connection watches.
    pub fn watch_presence(&self, user: UserId, conn_id: ConnId, watched: &[UserId]) {
        let mut state = self.state.write();
        let state = &mut *state;
        let Some(slot) = state
            .users
            .get_mut(&user)
            .and_then(|e| e.conns.iter_mut().find(|s| s.id == conn_id))
        else {
            return;
        };
        let previous = std::mem::replace(&mut slot.watching, watched.to_vec());
        for old in previous {
            if let Some(set) = state.watchers.get_mut(&old) {
                set.remove(&conn_id);
                if set.is_empty() {
                    state.watchers.remove(&old);
                }
            }
        }
        for &new in watched {
            state.watchers.entry(new).or_default().insert(conn_id, user);
        }
    }

    /// Delivers locally. Never blocks; evicts connections whose queue is full.
    pub fn deliver(&self, delivery: &Delivery) {
        let mut evicted: Vec<(UserId, ConnId)> = Vec::new();
        {
            let state = self.state.read();
            let mut push = |user: UserId, slot: &ConnSlot, message: Outbound| {
                match slot.tx.try_send(message) {
                    Ok(()) => {
                        self.metrics.pushes.inc();
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => evicted.push((user, slot.id)),
                    // The connection's task is gone; it unregisters itself.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                };
            };
            match delivery {
                Delivery::Conversation {
                    conversation_id,
                    frame,
                    skip_conn,
                    skip_user,
                } => {
                    let Some(members) = state.conversations.get(conversation_id) else {
                        return;
                    };
                    for &user in members.iter().filter(|&&u| u != *skip_user) {
                        let Some(entry) = state.users.get(&user) else {
                            continue;
                        };
                        for slot in entry.conns.iter().filter(|s| s.id != *skip_conn) {
                            push(user, slot, Outbound::Frame(frame.clone()));
                        }
                    }
                }
                Delivery::User { user_id, frame } => {
                    if let Some(entry) = state.users.get(user_id) {
                        for slot in &entry.conns {
                            push(*user_id, slot, Outbound::Frame(frame.clone()));
                        }
                    }
                }
                Delivery::Watchers { user_id, frame } => {
                    let Some(watchers) = state.watchers.get(user_id) else {
                        return;
                    };
                    for (conn_id, watcher) in watchers {
                        let slot = state
                            .users
                            .get(watcher)
                            .and_then(|e| e.conns.iter().find(|s| s.id == *conn_id));
                        if let Some(slot) = slot {
                            push(*watcher, slot, Outbound::Frame(frame.clone()));
                        }
                    }
                }
                Delivery::EndSession { token_hash } => {
                    for (user, entry) in &state.users {
                        for slot in entry.conns.iter().filter(|s| &s.token_hash == token_hash) {
                            if slot
                                .tx
                                .try_send(Outbound::Close(4001, "session ended"))
                                .is_err()
                            {
                                evicted.push((*user, slot.id));
                            }
                        }
                    }
                }
                Delivery::Membership { .. } => {}
            }
        }
        if let Delivery::Membership {
            conversation_id,
            user_id,
            member,
        } = delivery
        {
            self.set_membership(*conversation_id, *user_id, *member);
        }
        if !evicted.is_empty() {
            let mut state = self.state.write();
            for (user, conn_id) in evicted {
                // Dropping the slot drops the queue's only sender: the task sees it and closes with 4009.
                if Self::remove_conn(&mut state, user, conn_id) {
                    tracing::debug!(user, "last connection of user evicted");
                }
                self.metrics.slow_consumers.inc();
                tracing::info!(user, conn_id, "evicted slow consumer");
            }
        }
    }

    fn set_membership(&self, conversation: ConversationId, user: UserId, member: bool) {
        let mut state = self.state.write();
        let state = &mut *state;
        let Some(entry) = state.users.get_mut(&user) else {
            return;
        };
        if member {
            entry.conversations.insert(conversation);
            state
                .conversations
                .entry(conversation)
                .or_default()
                .insert(user);
        } else {
            entry.conversations.remove(&conversation);
            if let Some(set) = state.conversations.get_mut(&conversation) {
                set.remove(&user);
                if set.is_empty() {
                    state.conversations.remove(&conversation);
                }
            }
        }
    }

    /// Connections open on this node.
    pub fn connection_count(&self) -> usize {
        self.state
            .read()
            .users
            .values()
            .map(|entry| entry.conns.len())
            .sum()
    }
}

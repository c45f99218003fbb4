//! The hub: this node's registry of open connections, and local routing of pushes to them.
//!
//! The hub knows which local users are online, which conversations they are members of (loaded at connect
//! and kept current by membership deliveries) and who watches whose presence. It routes only: delivering
//! never waits and never writes a socket. A push, encoded once for the delivery (`encoded.rs`), goes into each
//! recipient's bounded queue ([`outbox`](mod@outbox)); the recipient's connection task writes it, or, while
//! that task is parked with nothing unsent, the connection's shard does (`direct.rs`). A connection whose
//! queue is full, or over its byte budget, is evicted as a slow consumer (its task then closes it with 4009
//! and the client resyncs from the store).

pub mod direct;
#[cfg(test)]
mod direct_tests;
pub mod encoded;
pub mod outbox;
mod route;
mod server_api;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use parking_lot::RwLock;

use crate::metrics::Metrics;
use crate::model::{ConversationId, UserId};
pub use outbox::{outbox, Budget, ConnInfo, Outbound, Outbox, Pushed, Queue};
pub use server_api::close_reason;

/// Identifies one WebSocket connection on this node.
pub type ConnId = u64;

/// A local delivery. Everything that reaches connections goes through one of these, so that a bus can carry
/// the same value between nodes.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// To every local connection of every member of the conversation, except `skip_conn` and `skip_user`.
    /// The connections of `own.user_id` get `own.frame` instead of `frame` (a message's sender's other
    /// devices get its `cmid`, which nobody else needs).
    Conversation {
        conversation_id: ConversationId,
        frame: Utf8Bytes,
        own: Option<OwnFrame>,
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
    /// Close every connection of this user with `code` (server API: ban, disconnect).
    CloseUser { user_id: UserId, code: u16 },
}

/// The variant of a conversation push that one member's own connections get.
#[derive(Debug, Clone)]
pub struct OwnFrame {
    pub user_id: UserId,
    pub frame: Utf8Bytes,
}

struct ConnSlot {
    id: ConnId,
    outbox: Arc<Outbox>,
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

/// Stops routing a conversation to a user; an empty entry is dropped so idle maps stay small.
fn unroute(
    routes: &mut HashMap<ConversationId, HashSet<UserId>>,
    conversation: ConversationId,
    user: UserId,
) {
    if let Some(users) = routes.get_mut(&conversation) {
        users.remove(&user);
        if users.is_empty() {
            routes.remove(&conversation);
        }
    }
}

/// Stops a connection watching a user's presence; an empty entry is dropped.
fn unwatch(
    watchers: &mut HashMap<UserId, HashMap<ConnId, UserId>>,
    watched: UserId,
    conn_id: ConnId,
) {
    if let Some(conns) = watchers.get_mut(&watched) {
        conns.remove(&conn_id);
        if conns.is_empty() {
            watchers.remove(&watched);
        }
    }
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
    /// The server's metrics (the cluster bus counts what it drops there).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

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

    /// Registers a connection of `user`, a member of `conversations`, that receives pushes through `outbox`.
    pub fn register(
        &self,
        user: UserId,
        token_hash: [u8; 32],
        conversations: &[ConversationId],
        outbox: Outbox,
    ) -> Registered {
        let conn_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.write();
        let state = &mut *state;
        let entry = state.users.entry(user).or_default();
        let first_of_user = entry.conns.is_empty();
        entry.conns.push(ConnSlot {
            id: conn_id,
            outbox: Arc::new(outbox),
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

    /// Moves a connection to the session of `token_hash` (after `auth_refresh`): ending that session
    /// ([`Delivery::EndSession`]) closes it from now on, ending its old one no longer does.
    pub fn set_session(&self, user: UserId, conn_id: ConnId, token_hash: [u8; 32]) {
        let mut state = self.state.write();
        let slot = state
            .users
            .get_mut(&user)
            .and_then(|entry| entry.conns.iter_mut().find(|slot| slot.id == conn_id));
        if let Some(slot) = slot {
            slot.token_hash = token_hash;
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
            unwatch(&mut state.watchers, watched, conn_id);
        }
        if !entry.conns.is_empty() {
            return false;
        }
        let entry = state.users.remove(&user).unwrap_or_default();
        for conversation in entry.conversations {
            unroute(&mut state.conversations, conversation, user);
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
            unwatch(&mut state.watchers, old, conn_id);
        }
        for &new in watched {
            state.watchers.entry(new).or_default().insert(conn_id, user);
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
            unroute(&mut state.conversations, conversation, user);
        }
    }

    /// Users with at least one connection on this node.
    pub fn local_users(&self) -> Vec<UserId> {
        self.state.read().users.keys().copied().collect()
    }

    /// Pushes `frame` to every connection on this node (e.g. `resync` after the cluster bus reconnected).
    pub fn broadcast(&self, frame: &Utf8Bytes) {
        let users = self.local_users();
        for user_id in users {
            self.deliver(&Delivery::User {
                user_id,
                frame: frame.clone(),
            });
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

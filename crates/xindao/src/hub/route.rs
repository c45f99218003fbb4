//! Routing a delivery on this node: picking the recipients' outboxes under the read lock, pushing the frame
//! to each after it, and evicting connections whose queue is full. Kept apart from `mod.rs`, which keeps the
//! registry (who is connected, in which conversations, watching whom) that routing reads.

use std::sync::Arc;

use super::direct::Listing;
use super::encoded::Encoded;
use super::{ConnId, ConnSlot, Delivery, Hub, Outbound, Outbox, Pushed, State};
use crate::model::UserId;

impl Hub {
    /// Delivers locally. Never waits; evicts connections whose queue is full.
    pub fn deliver(&self, delivery: &Delivery) {
        let mut own = None;
        let (frame, recipients) = match delivery {
            Delivery::Membership {
                conversation_id,
                user_id,
                member,
            } => return self.set_membership(*conversation_id, *user_id, *member),
            Delivery::CloseUser { user_id, code } => {
                self.close_user(*user_id, None, *code);
                return;
            }
            Delivery::EndSession { token_hash } => {
                let recipients = self.recipients(|state, add| {
                    for (user, entry) in &state.users {
                        for slot in entry.conns.iter().filter(|s| &s.token_hash == token_hash) {
                            add(*user, slot);
                        }
                    }
                });
                let mut evicted = Vec::new();
                for (user, conn_id, outbox) in recipients {
                    if outbox.send(Outbound::Close(4001, "session ended")) != Pushed::Queued {
                        evicted.push((user, conn_id));
                    }
                }
                return self.evict(evicted);
            }
            Delivery::Conversation {
                conversation_id,
                frame,
                own: own_frame,
                skip_conn,
                skip_user,
            } => (
                {
                    own = own_frame.as_ref();
                    frame
                },
                self.recipients(|state, add| {
                    let Some(members) = state.conversations.get(conversation_id) else {
                        return;
                    };
                    for &user in members.iter().filter(|&&u| u != *skip_user) {
                        let Some(entry) = state.users.get(&user) else {
                            continue;
                        };
                        for slot in entry.conns.iter().filter(|s| s.id != *skip_conn) {
                            add(user, slot);
                        }
                    }
                }),
            ),
            Delivery::User { user_id, frame } => (
                frame,
                self.recipients(|state, add| {
                    if let Some(entry) = state.users.get(user_id) {
                        for slot in &entry.conns {
                            add(*user_id, slot);
                        }
                    }
                }),
            ),
            Delivery::Watchers { user_id, frame } => (
                frame,
                self.recipients(|state, add| {
                    let Some(watchers) = state.watchers.get(user_id) else {
                        return;
                    };
                    for (conn_id, watcher) in watchers {
                        let slot = state
                            .users
                            .get(watcher)
                            .and_then(|e| e.conns.iter().find(|s| s.id == *conn_id));
                        if let Some(slot) = slot {
                            add(*watcher, slot);
                        }
                    }
                }),
            ),
        };
        let mut evicted = Vec::new();
        let mut queued = 0;
        let mut listing = Listing::default();
        // Encoded once for every recipient (a reference count each), the sender's own frame once if needed.
        let frame = Arc::new(Encoded::new(frame.clone()));
        let mut own_frame = None;
        for (user, conn_id, outbox) in recipients {
            let frame = match own {
                Some(own) if own.user_id == user => {
                    &*own_frame.get_or_insert_with(|| Arc::new(Encoded::new(own.frame.clone())))
                }
                _ => &frame,
            };
            match outbox.push_listing(frame, &mut listing) {
                // Counted once per delivery: the counter is one cache line shared by every worker.
                Pushed::Queued => queued += 1,
                Pushed::Full | Pushed::OverBudget => evicted.push((user, conn_id)),
                // The connection's task is gone; it unregisters itself.
                Pushed::Closed => {}
            }
        }
        // Parked recipients' shards write now.
        drop(listing);
        if queued > 0 {
            self.metrics.pushes.inc_by(queued);
        }
        self.evict(evicted);
    }

    /// The outboxes `select` picks, taken under the read lock and used after it: a push may wake the
    /// recipient's task, and holding the lock through a broadcast's wake-ups would keep connections from
    /// registering for as long as it takes.
    pub(super) fn recipients(
        &self,
        select: impl FnOnce(&State, &mut dyn FnMut(UserId, &ConnSlot)),
    ) -> Vec<(UserId, ConnId, Arc<Outbox>)> {
        let mut recipients = Vec::new();
        let state = self.state.read();
        select(&state, &mut |user, slot| {
            recipients.push((user, slot.id, slot.outbox.clone()))
        });
        recipients
    }

    pub(super) fn evict(&self, evicted: Vec<(UserId, ConnId)>) {
        if evicted.is_empty() {
            return;
        }
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

//! What the server API asks of the hub: a user's connections on this node with who is at the other end, and
//! closing them (all, or one) with a server-API close code (4003 banned, 4004 disconnected).

use super::{ConnId, ConnInfo, Hub, Outbound, Pushed};
use crate::model::UserId;

/// The close reason sent with a server-API close code (docs/protocol.md, "Close codes").
pub fn close_reason(code: u16) -> &'static str {
    match code {
        4003 => "banned",
        4004 => "disconnected by the server",
        _ => "closed by the server",
    }
}

impl Hub {
    /// The connections of `user` on this node, oldest first, with who is at the other end.
    pub fn connections_info(&self, user: UserId) -> Vec<(ConnId, ConnInfo)> {
        let state = self.state.read();
        let mut found: Vec<(ConnId, ConnInfo)> = state
            .users
            .get(&user)
            .map(|entry| {
                entry
                    .conns
                    .iter()
                    .map(|slot| (slot.id, slot.outbox.info().clone()))
                    .collect()
            })
            .unwrap_or_default();
        found.sort_by_key(|(id, _)| *id);
        found
    }

    /// Closes the connections of `user` on this node (only `conn`, if given) with `code`, once each has
    /// written what was queued before; returns how many.
    pub fn close_user(&self, user: UserId, conn: Option<ConnId>, code: u16) -> usize {
        let recipients = self.recipients(|state, add| {
            if let Some(entry) = state.users.get(&user) {
                for slot in entry
                    .conns
                    .iter()
                    .filter(|s| conn.is_none_or(|c| c == s.id))
                {
                    add(user, slot);
                }
            }
        });
        let closed = recipients.len();
        let mut evicted = Vec::new();
        for (user, conn_id, outbox) in recipients {
            if outbox.send(Outbound::Close(code, close_reason(code))) != Pushed::Queued {
                evicted.push((user, conn_id));
            }
        }
        self.evict(evicted);
        closed
    }
}

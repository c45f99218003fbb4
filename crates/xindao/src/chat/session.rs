//! A connection's life in the chat service: registered with the hub on connect (announcing the user online),
//! unregistered on disconnect (announcing them offline after their last), ended by logout.

use crate::auth::Session;
use crate::error::{Error, Result};
use crate::hub::{Delivery, Outbox, Registered};
use crate::model::User;

use super::{Caller, Chat};

impl Chat {
    /// Registers a new connection with the hub and announces the user's presence if they just came online.
    /// Returns the user, for the greeting; `Unauthorized` if the user no longer exists.
    pub async fn connect(&self, session: &Session, outbox: Outbox) -> Result<(User, Registered)> {
        let (user, conversations) = self
            .store
            .connection_state(session.user_id)
            .await?
            .ok_or(Error::Unauthorized)?;
        let registered =
            self.hub
                .register(session.user_id, session.token_hash, &conversations, outbox);
        // A ban commits, then closes the user's registered sockets: one registered just after that close
        // went out is caught here, since the ban is committed by then (docs/server-api.md, "ban").
        let banned = self.store.is_banned(session.user_id).await;
        if !matches!(banned, Ok(false)) {
            self.hub.unregister(session.user_id, registered.conn_id);
            return Err(banned.err().unwrap_or(Error::Banned));
        }
        if registered.first_of_user {
            self.bus.local_presence(session.user_id, true);
            self.emit_presence(session.user_id, true);
        }
        Ok((user, registered))
    }

    /// Unregisters a connection; announces the user offline when it was their last.
    pub fn disconnect(&self, caller: Caller) {
        if self.hub.unregister(caller.user_id, caller.conn_id) {
            self.bus.local_presence(caller.user_id, false);
            self.emit_presence(caller.user_id, false);
        }
    }

    /// Ends every connection of a session (after logout).
    pub fn end_session(&self, token_hash: [u8; 32]) {
        self.bus.publish(Delivery::EndSession { token_hash });
    }
}

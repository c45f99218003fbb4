//! Room grants of a business JWT (`rooms` claim): on the token's first use its user joins each granted room,
//! as if its owner had added them (so invite-only rooms work too), and the room is told (`member` push,
//! `added` by the owner). A grant that cannot be applied (no such room, a direct conversation, a cap) is
//! logged and skipped: the connection still opens.

use crate::model::{ConversationId, Role, UserId};

use super::Chat;

/// Members read to find a room's owner (the owner is usually the longest-standing member, first).
const OWNER_SCAN: usize = 200;

impl Chat {
    /// Joins `user` to each of `rooms` they are not in yet.
    pub async fn apply_grants(&self, user: UserId, rooms: &[ConversationId]) {
        for &room in rooms {
            if let Err(error) = self.apply_grant(user, room).await {
                tracing::warn!(user, room, %error, "room grant of a JWT not applied");
            }
        }
    }

    async fn apply_grant(&self, user: UserId, room: ConversationId) -> crate::Result<()> {
        let owner = self
            .store
            .members(room, None, OWNER_SCAN)
            .await?
            .into_iter()
            .find(|member| member.role == Role::Owner)
            .map(|member| member.user.id);
        let by = owner.filter(|&owner| owner != user);
        if self.store.join_room(room, user, by).await? {
            match by {
                Some(owner) => self.membership_changed(room, user, "added", owner).await,
                None => self.membership_changed(room, user, "joined", user).await,
            }
        }
        Ok(())
    }
}

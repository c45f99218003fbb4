//! Conversations and who is in them: finding users, opening direct conversations, creating, joining and
//! leaving rooms, adding and removing members, listing members, public rooms and the caller's conversations.
//! The store decides who may do what; this announces the changes (`member` events, hub routing).

use std::num::NonZeroUsize;

use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::error::Result;
use crate::hub::Delivery;
use crate::model::{ConversationId, Role, User, UserId};
use crate::protocol::{
    self,
    op::{
        ConversationArgs, DirectOpenArgs, LimitArgs, RoomCreateArgs, RoomMemberArgs, UserFindArgs,
    },
};
use crate::validate;

use super::{raw, Caller, Chat};

const PUBLIC_ROOMS_MAX: usize = 200;

#[derive(Serialize)]
struct MemberEvent {
    conversation_id: ConversationId,
    user_id: UserId,
    action: &'static str,
    by: UserId,
}

#[derive(Serialize)]
struct MemberView {
    user: User,
    role: Role,
    read_seq: i64,
    online: bool,
}

impl Chat {
    pub(super) async fn user_find(&self, a: UserFindArgs) -> Result<Box<RawValue>> {
        let name = validate::name(&a.display_name, "display_name")?;
        raw(&json!({ "users": self.store.users_named(&name, 20).await? }))
    }

    pub(super) async fn direct_open(
        &self,
        caller: Caller,
        a: DirectOpenArgs,
    ) -> Result<Box<RawValue>> {
        let id = self.open_direct(caller.user_id, a.user_id).await?;
        self.conversation_reply(id, caller.user_id).await
    }

    pub(super) async fn room_create(
        &self,
        caller: Caller,
        a: RoomCreateArgs,
    ) -> Result<Box<RawValue>> {
        let name = validate::name(&a.name, "name")?;
        let id = self
            .store
            .create_room(caller.user_id, &name, a.visibility)
            .await?;
        self.bus.publish(Delivery::Membership {
            conversation_id: id,
            user_id: caller.user_id,
            member: true,
        });
        self.conversation_reply(id, caller.user_id).await
    }

    pub(super) async fn room_join(
        &self,
        caller: Caller,
        a: ConversationArgs,
    ) -> Result<Box<RawValue>> {
        let user = caller.user_id;
        if self.store.join_room(a.conversation_id, user, None).await? {
            self.membership_changed(a.conversation_id, user, "joined", user);
        }
        self.conversation_reply(a.conversation_id, user).await
    }

    pub(super) async fn room_add(
        &self,
        caller: Caller,
        a: RoomMemberArgs,
    ) -> Result<Box<RawValue>> {
        let by = caller.user_id;
        if self
            .store
            .join_room(a.conversation_id, a.user_id, Some(by))
            .await?
        {
            self.membership_changed(a.conversation_id, a.user_id, "added", by);
        }
        raw(&json!({}))
    }

    pub(super) async fn room_remove(
        &self,
        caller: Caller,
        a: RoomMemberArgs,
    ) -> Result<Box<RawValue>> {
        let by = caller.user_id;
        if self
            .store
            .leave_room(a.conversation_id, a.user_id, Some(by))
            .await?
        {
            self.membership_changed(a.conversation_id, a.user_id, "removed", by);
        }
        raw(&json!({}))
    }

    pub(super) async fn room_leave(
        &self,
        caller: Caller,
        a: ConversationArgs,
    ) -> Result<Box<RawValue>> {
        let user = caller.user_id;
        if self.store.leave_room(a.conversation_id, user, None).await? {
            self.membership_changed(a.conversation_id, user, "left", user);
        }
        raw(&json!({}))
    }

    pub(super) async fn room_members(
        &self,
        caller: Caller,
        a: ConversationArgs,
    ) -> Result<Box<RawValue>> {
        self.require_member(a.conversation_id, caller.user_id)
            .await?;
        let members: Vec<MemberView> = self
            .store
            .members(a.conversation_id)
            .await?
            .into_iter()
            .map(|m| MemberView {
                online: self.bus.is_online(m.user.id),
                user: m.user,
                role: m.role,
                read_seq: m.read_seq,
            })
            .collect();
        raw(&json!({ "members": members }))
    }

    pub(super) async fn rooms_public(&self, a: LimitArgs) -> Result<Box<RawValue>> {
        let limit = a.limit.map_or(50, NonZeroUsize::get).min(PUBLIC_ROOMS_MAX);
        raw(&json!({ "rooms": self.store.public_rooms(limit).await? }))
    }

    pub(super) async fn conversations(&self, caller: Caller) -> Result<Box<RawValue>> {
        raw(&json!({ "conversations": self.store.conversations_of(caller.user_id).await? }))
    }

    async fn conversation_reply(&self, id: ConversationId, user: UserId) -> Result<Box<RawValue>> {
        raw(&json!({ "conversation": self.store.conversation_for(id, user).await? }))
    }

    /// The direct conversation of the pair, created (and routed to both) if needed.
    pub(super) async fn open_direct(&self, user: UserId, peer: UserId) -> Result<ConversationId> {
        let (id, created) = self.store.open_direct(user, peer).await?;
        if created {
            for member in [user, peer] {
                self.bus.publish(Delivery::Membership {
                    conversation_id: id,
                    user_id: member,
                    member: true,
                });
            }
        }
        Ok(id)
    }

    /// Routes the conversation to (or away from) `user` and tells the members. The user's own connections
    /// hear about it too, even when they were removed.
    fn membership_changed(
        &self,
        conversation_id: ConversationId,
        user_id: UserId,
        action: &'static str,
        by: UserId,
    ) {
        let joined = matches!(action, "joined" | "added");
        let frame = protocol::event(
            "member",
            &MemberEvent {
                conversation_id,
                user_id,
                action,
                by,
            },
        );
        if joined {
            self.bus.publish(Delivery::Membership {
                conversation_id,
                user_id,
                member: true,
            });
        }
        self.bus.publish(Delivery::Conversation {
            conversation_id,
            frame: frame.clone(),
            own: None,
            skip_conn: 0,
            skip_user: 0,
        });
        if !joined {
            self.bus.publish(Delivery::Membership {
                conversation_id,
                user_id,
                member: false,
            });
            self.bus.publish(Delivery::User { user_id, frame });
        }
    }
}

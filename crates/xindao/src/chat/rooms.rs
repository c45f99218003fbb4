//! Conversations and who is in them: finding users, opening direct conversations, creating, joining and
//! leaving rooms, adding and removing members, listing members, public rooms and the caller's conversations.
//! The store decides who may do what; this announces the changes (`member` events, hub routing).

use std::num::NonZeroUsize;

use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::error::Result;
use crate::hub::Delivery;
use crate::model::{ActivityCursor, ConversationId, MemberCursor, Role, User, UserId};
use crate::protocol::{
    self,
    op::{
        ConversationArgs, ConversationsArgs, DirectOpenArgs, LimitArgs, RoomCreateArgs,
        RoomMemberArgs, RoomMembersArgs, UserFindArgs,
    },
};
use crate::validate;

use super::paging::{
    decode_activity, decode_member, encode_activity, encode_member, fitting, REPLY_BYTES_MAX,
};
use super::summaries::Change;
use super::{raw, Caller, Chat};

const PUBLIC_ROOMS_MAX: usize = 200;
/// Conversations per `conversations` page: by default, and at most.
const CONVERSATIONS_PAGE_DEFAULT: usize = 50;
const CONVERSATIONS_PAGE_MAX: usize = 200;
/// Members per `room_members` page: by default, and at most (a member is at most a few hundred bytes).
const MEMBERS_PAGE_DEFAULT: usize = 200;
const MEMBERS_PAGE_MAX: usize = 1000;

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
    pub(super) async fn user_find(&self, caller: Caller, a: UserFindArgs) -> Result<Box<RawValue>> {
        let name = validate::name(&a.display_name, "display_name")?;
        self.lookups.check(caller.user_id)?;
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
        self.emit_room_created(id, caller.user_id, &name, a.visibility)
            .await;
        self.conversation_reply(id, caller.user_id).await
    }

    pub(super) async fn room_join(
        &self,
        caller: Caller,
        a: ConversationArgs,
    ) -> Result<Box<RawValue>> {
        let user = caller.user_id;
        if self.store.join_room(a.conversation_id, user, None).await? {
            self.membership_changed(a.conversation_id, user, "joined", user)
                .await;
        }
        self.conversation_reply(a.conversation_id, user).await
    }

    pub(super) async fn room_add(
        &self,
        caller: Caller,
        a: RoomMemberArgs,
    ) -> Result<Box<RawValue>> {
        let by = caller.user_id;
        self.room_adds.check(by)?;
        if self
            .store
            .join_room(a.conversation_id, a.user_id, Some(by))
            .await?
        {
            self.membership_changed(a.conversation_id, a.user_id, "added", by)
                .await;
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
            self.membership_changed(a.conversation_id, a.user_id, "removed", by)
                .await;
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
            self.membership_changed(a.conversation_id, user, "left", user)
                .await;
        }
        raw(&json!({}))
    }

    pub(super) async fn room_members(
        &self,
        caller: Caller,
        a: RoomMembersArgs,
    ) -> Result<Box<RawValue>> {
        self.require_member(a.conversation_id, caller.user_id)
            .await?;
        let limit = a
            .limit
            .map_or(MEMBERS_PAGE_DEFAULT, NonZeroUsize::get)
            .min(MEMBERS_PAGE_MAX);
        let cursor = a.cursor.as_deref().map(decode_member).transpose()?;
        let mut page = self
            .store
            .members(a.conversation_id, cursor, limit + 1)
            .await?;
        let has_more = page.len() > limit;
        page.truncate(limit);
        let next_cursor = page.last().filter(|_| has_more).map(|last| {
            encode_member(MemberCursor {
                joined_at: last.joined_at,
                user_id: last.user.id,
            })
        });
        let members: Vec<MemberView> = page
            .into_iter()
            .map(|m| MemberView {
                online: self.bus.is_online(m.user.id),
                user: m.user,
                role: m.role,
                read_seq: m.read_seq,
            })
            .collect();
        raw(&json!({ "members": members, "has_more": has_more, "next_cursor": next_cursor }))
    }

    pub(super) async fn rooms_public(&self, a: LimitArgs) -> Result<Box<RawValue>> {
        let limit = a.limit.map_or(50, NonZeroUsize::get).min(PUBLIC_ROOMS_MAX);
        raw(&json!({ "rooms": self.store.public_rooms(limit).await? }))
    }

    /// One page of the caller's conversations, most recent activity first, bounded by count and bytes.
    pub(super) async fn conversations(
        &self,
        caller: Caller,
        a: ConversationsArgs,
    ) -> Result<Box<RawValue>> {
        let limit = a
            .limit
            .map_or(CONVERSATIONS_PAGE_DEFAULT, NonZeroUsize::get)
            .min(CONVERSATIONS_PAGE_MAX);
        let cursor = a.cursor.as_deref().map(decode_activity).transpose()?;
        let mut page = self
            .store
            .conversations_page(caller.user_id, cursor, limit + 1)
            .await?;
        let mut has_more = page.len() > limit;
        page.truncate(limit);
        let fit = fitting(&page, REPLY_BYTES_MAX);
        if fit < page.len() {
            page.truncate(fit);
            has_more = true;
        }
        let next_cursor = page
            .last()
            .filter(|_| has_more)
            .map(|last| encode_activity(ActivityCursor::after(last)));
        raw(&json!({ "conversations": page, "has_more": has_more, "next_cursor": next_cursor }))
    }

    async fn conversation_reply(&self, id: ConversationId, user: UserId) -> Result<Box<RawValue>> {
        raw(&json!({ "conversation": self.store.conversation_for(id, user).await? }))
    }

    /// The direct conversation of the pair, created (and routed to both) if needed. Opening one with someone
    /// new is a user lookup (it tells whether the id exists): it counts against `lookups_per_min`.
    pub(super) async fn open_direct(&self, user: UserId, peer: UserId) -> Result<ConversationId> {
        if let Some(id) = self.store.direct_between(user, peer).await? {
            return Ok(id);
        }
        self.lookups.check(user)?;
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

    /// Routes the conversation to (or away from) `user` and tells the members: each change as a `member`
    /// push in a room of at most `room_member_events_max` members, in a bigger one a `members_changed`
    /// summary within a second ([`super::summaries`]). The user's own connections get their `member` push
    /// either way, even when they were removed.
    pub(super) async fn membership_changed(
        &self,
        conversation_id: ConversationId,
        user_id: UserId,
        action: &'static str,
        by: UserId,
    ) {
        self.emit_member(conversation_id, user_id, action, by).await;
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
        // A room whose size cannot be read now is treated as small: the change is told as before.
        let big = self
            .store
            .member_count(conversation_id)
            .await
            .is_ok_and(|count| count > self.config.room_member_events_max as i64);
        if joined {
            self.bus.publish(Delivery::Membership {
                conversation_id,
                user_id,
                member: true,
            });
        }
        if big {
            self.summaries.record(
                conversation_id,
                Change {
                    user_id,
                    action,
                    by,
                },
            );
        } else {
            self.bus.publish(Delivery::Conversation {
                conversation_id,
                frame: frame.clone(),
                own: None,
                skip_conn: 0,
                skip_user: 0,
            });
        }
        if !joined {
            self.bus.publish(Delivery::Membership {
                conversation_id,
                user_id,
                member: false,
            });
        }
        if big || !joined {
            self.bus.publish(Delivery::User { user_id, frame });
        }
    }
}

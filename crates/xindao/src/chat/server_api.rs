//! The chat operations a business backend runs through the server API (`http::server_api`): the same
//! methods as the clients' operations wherever one exists (a send is `send`, with the same validation, group
//! commit, seq and pushes; membership changes announce `member`/`members_changed` as `room_add` does), with
//! the backend acting for a user it names, or as the system account.

use std::num::NonZeroUsize;

use serde_json::json;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::hub::Delivery;
use crate::model::{ConversationId, MemberCursor, Range, UserId, Visibility};
use crate::protocol::{
    self,
    op::{ConversationsArgs, SendArgs},
};
use crate::validate;

use super::paging::{decode_member, encode_member, fit_page, REPLY_BYTES_MAX};
use super::wechat::CheckMode;
use super::{raw, Caller, Chat};

/// Members per page of the server API's member list: by default, and at most.
const MEMBERS_PAGE_DEFAULT: usize = 200;
const MEMBERS_PAGE_MAX: usize = 1000;

/// A caller without a connection: pushes go to all of the user's connections.
fn as_user(user_id: UserId) -> Caller {
    Caller {
        user_id,
        conn_id: 0,
    }
}

impl Chat {
    /// `send` as `sender` (a user, or the system account): the client path itself, from no connection, so
    /// every connection of the sender gets the `message` push, and offline members are notified alike. Not
    /// content-checked (the backend is trusted) unless `content_check` asks for it.
    pub async fn server_send(
        &self,
        sender: UserId,
        args: SendArgs,
        content_check: bool,
    ) -> Result<Box<RawValue>> {
        let mode = if content_check {
            CheckMode::Requested
        } else {
            CheckMode::Trusted
        };
        self.send_checked(as_user(sender), args, mode).await
    }

    /// The direct conversation of the system account and `user`, created (and routed to the user's
    /// connections) if needed.
    pub async fn system_direct(&self, system: UserId, user: UserId) -> Result<ConversationId> {
        let (id, created) = self.store.open_system_direct(system, user).await?;
        if created {
            for member in [system, user] {
                self.bus.publish(Delivery::Membership {
                    conversation_id: id,
                    user_id: member,
                    member: true,
                });
            }
        }
        Ok(id)
    }

    /// Creates a room owned by `owner` and adds `members` as the owner would (`member` events).
    pub async fn server_room_create(
        &self,
        owner: UserId,
        name: &str,
        visibility: Visibility,
        members: &[UserId],
    ) -> Result<Box<RawValue>> {
        let name = validate::name(name, "name")?;
        let id = self.store.create_room(owner, &name, visibility).await?;
        self.bus.publish(Delivery::Membership {
            conversation_id: id,
            user_id: owner,
            member: true,
        });
        for &member in members.iter().filter(|&&m| m != owner) {
            self.server_room_add(id, member, owner).await?;
        }
        raw(&json!({ "conversation": self.store.conversation_for(id, owner).await? }))
    }

    /// Adds `user` to a room, authorised as `by` (the room's owner); true when they were not a member.
    pub async fn server_room_add(
        &self,
        conversation: ConversationId,
        user: UserId,
        by: UserId,
    ) -> Result<bool> {
        let added = self.store.join_room(conversation, user, Some(by)).await?;
        if added {
            self.membership_changed(conversation, user, "added", by)
                .await;
        }
        Ok(added)
    }

    /// Removes `user` from a room, authorised as its owner `by` (the owner themselves leaves, and ownership
    /// passes on as with `room_leave`); true when they were a member.
    pub async fn server_room_remove(
        &self,
        conversation: ConversationId,
        user: UserId,
        by: Option<UserId>,
    ) -> Result<bool> {
        let remover = by.filter(|&owner| owner != user);
        let removed = self.store.leave_room(conversation, user, remover).await?;
        if removed {
            self.membership_changed(conversation, user, "removed", by.unwrap_or(user))
                .await;
        }
        Ok(removed)
    }

    /// Renames a room and tells its members (`room_updated`).
    pub async fn server_room_rename(&self, conversation: ConversationId, name: &str) -> Result<()> {
        let name = validate::name(name, "name")?;
        self.store.rename_room(conversation, &name).await?;
        self.publish_to_conversation(
            conversation,
            protocol::event(
                "room_updated",
                &json!({ "conversation_id": conversation, "name": name }),
            ),
        );
        Ok(())
    }

    /// Archives a room: tells its members (`room_archived`), then stops routing it to them. Returns how many
    /// members it had.
    pub async fn server_room_archive(&self, conversation: ConversationId) -> Result<usize> {
        let members = self.store.archive_room(conversation).await?;
        self.publish_to_conversation(
            conversation,
            protocol::event("room_archived", &json!({ "conversation_id": conversation })),
        );
        for &user_id in &members {
            self.bus.publish(Delivery::Membership {
                conversation_id: conversation,
                user_id,
                member: false,
            });
        }
        Ok(members.len())
    }

    /// A page of a conversation's members, longest-standing first (as `room_members`, without the caller's
    /// membership check).
    pub async fn server_members(
        &self,
        conversation: ConversationId,
        limit: Option<NonZeroUsize>,
        cursor: Option<&str>,
    ) -> Result<Box<RawValue>> {
        let limit = limit
            .map_or(MEMBERS_PAGE_DEFAULT, NonZeroUsize::get)
            .min(MEMBERS_PAGE_MAX);
        let cursor = cursor.map(decode_member).transpose()?;
        let mut page = self.store.members(conversation, cursor, limit + 1).await?;
        let has_more = page.len() > limit;
        page.truncate(limit);
        let next_cursor = page.last().filter(|_| has_more).map(|last| {
            encode_member(MemberCursor {
                joined_at: last.joined_at,
                user_id: last.user.id,
            })
        });
        let members: Vec<_> = page
            .into_iter()
            .map(|m| {
                json!({ "user": m.user, "role": m.role, "read_seq": m.read_seq,
                        "joined_at": m.joined_at, "online": self.bus.is_online(m.user.id) })
            })
            .collect();
        raw(&json!({ "members": members, "has_more": has_more, "next_cursor": next_cursor }))
    }

    /// A page of `user`'s conversations as they see them (the `conversations` operation).
    pub async fn server_conversations(
        &self,
        user: UserId,
        args: ConversationsArgs,
    ) -> Result<Box<RawValue>> {
        self.conversations(as_user(user), args).await
    }

    /// A page of a conversation's messages (as `history`, without the membership check), at most
    /// `history_page_max` and 1 MiB.
    pub async fn server_history(
        &self,
        conversation: ConversationId,
        range: Range,
        limit: Option<NonZeroUsize>,
    ) -> Result<Box<RawValue>> {
        let page = self
            .store
            .history(conversation, range, self.page_limit(limit, 50))
            .await?;
        let mut budget = REPLY_BYTES_MAX;
        let page = fit_page(page, !matches!(range, Range::After(_)), &mut budget, true);
        raw(&json!({ "messages": page.messages, "has_more": page.has_more }))
    }

    /// An ephemeral `event` push (not stored) to every connection of a user, or of a conversation's members.
    pub fn server_event(&self, target: EventTarget, kind: &str, data: &serde_json::Value) {
        match target {
            EventTarget::User(user_id) => {
                let frame = protocol::event("event", &json!({ "type": kind, "data": data }));
                self.bus.publish(Delivery::User { user_id, frame });
            }
            EventTarget::Conversation(conversation_id) => {
                let frame = protocol::event(
                    "event",
                    &json!({ "type": kind, "data": data, "conversation_id": conversation_id }),
                );
                self.publish_to_conversation(conversation_id, frame);
            }
        }
    }

    fn publish_to_conversation(
        &self,
        conversation_id: ConversationId,
        frame: axum::extract::ws::Utf8Bytes,
    ) {
        self.bus.publish(Delivery::Conversation {
            conversation_id,
            frame,
            own: None,
            skip_conn: 0,
            skip_user: 0,
        });
    }
}

/// Who an ephemeral server event goes to.
#[derive(Debug, Clone, Copy)]
pub enum EventTarget {
    User(UserId),
    Conversation(ConversationId),
}

/// Refuses an id that names nothing with `not_found`.
pub fn found<T>(value: Option<T>, what: &'static str) -> Result<T> {
    value.ok_or(Error::NotFound(what))
}

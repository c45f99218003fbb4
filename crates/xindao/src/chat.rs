//! The chat service: every WebSocket operation, authorised against the store, with its pushes published on
//! the bus. Transport-agnostic: it takes decoded requests and returns results or errors.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use serde_json::value::{to_raw_value, RawValue};

use crate::auth::Session;
use crate::bus::Bus;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hub::{ConnId, Delivery, Hub, Registered};
use crate::mailbox::Mailbox;
use crate::model::*;
use crate::protocol::{self, args};
use crate::store::Store;
use crate::validate;

const PRESENCE_WATCH_MAX: usize = 500;
const PUBLIC_ROOMS_MAX: usize = 200;
/// Largest history or sync reply, in bytes of messages: big messages make shorter pages.
const REPLY_BYTES_MAX: usize = 1024 * 1024;

/// The caller of an operation: one connection of one user.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: UserId,
    pub conn_id: ConnId,
}

pub struct Chat {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    hub: Arc<Hub>,
    config: Arc<Config>,
}

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

fn raw(value: &impl Serialize) -> Result<Box<RawValue>> {
    to_raw_value(value).map_err(|e| Error::Internal(format!("encode result: {e}")))
}

impl Chat {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        hub: Arc<Hub>,
        config: Arc<Config>,
    ) -> Chat {
        Chat {
            store,
            bus,
            hub,
            config,
        }
    }

    /// Registers a new connection with the hub and announces the user's presence if they just came online.
    /// Returns the user, for the greeting; `Unauthorized` if the user no longer exists.
    pub async fn connect(&self, session: &Session, mailbox: Mailbox) -> Result<(User, Registered)> {
        let (user, conversations) = self
            .store
            .connection_state(session.user_id)
            .await?
            .ok_or(Error::Unauthorized)?;
        let registered =
            self.hub
                .register(session.user_id, session.token_hash, &conversations, mailbox);
        if registered.first_of_user {
            self.bus.local_presence(session.user_id, true);
        }
        Ok((user, registered))
    }

    /// Unregisters a connection; announces the user offline when it was their last.
    pub fn disconnect(&self, caller: Caller) {
        if self.hub.unregister(caller.user_id, caller.conn_id) {
            self.bus.local_presence(caller.user_id, false);
        }
    }

    /// Ends every connection of a session (after logout).
    pub fn end_session(&self, token_hash: [u8; 32]) {
        self.bus.publish(Delivery::EndSession { token_hash });
    }

    /// Runs one operation for `caller`.
    pub async fn handle(
        &self,
        caller: Caller,
        op: &str,
        raw_args: Option<&RawValue>,
    ) -> Result<Box<RawValue>> {
        let user = caller.user_id;
        match op {
            "ping" => raw(&json!({ "ts": now_millis() })),
            "user_find" => {
                let a: protocol::UserFindArgs = args(raw_args)?;
                let name = validate::name(&a.display_name, "display_name")?;
                raw(&json!({ "users": self.store.users_named(&name, 20).await? }))
            }
            "direct_open" => {
                let a: protocol::DirectOpenArgs = args(raw_args)?;
                let id = self.open_direct(user, a.user_id).await?;
                raw(&json!({ "conversation": self.store.conversation_for(id, user).await? }))
            }
            "room_create" => {
                let a: protocol::RoomCreateArgs = args(raw_args)?;
                let name = validate::name(&a.name, "name")?;
                let id = self.store.create_room(user, &name, a.visibility).await?;
                self.bus.publish(Delivery::Membership {
                    conversation_id: id,
                    user_id: user,
                    member: true,
                });
                raw(&json!({ "conversation": self.store.conversation_for(id, user).await? }))
            }
            "room_join" => {
                let a: protocol::ConversationArgs = args(raw_args)?;
                if self.store.join_room(a.conversation_id, user, None).await? {
                    self.membership_changed(a.conversation_id, user, "joined", user);
                }
                raw(
                    &json!({ "conversation": self.store.conversation_for(a.conversation_id, user).await? }),
                )
            }
            "room_add" => {
                let a: protocol::RoomMemberArgs = args(raw_args)?;
                if self
                    .store
                    .join_room(a.conversation_id, a.user_id, Some(user))
                    .await?
                {
                    self.membership_changed(a.conversation_id, a.user_id, "added", user);
                }
                raw(&json!({}))
            }
            "room_remove" => {
                let a: protocol::RoomMemberArgs = args(raw_args)?;
                if self
                    .store
                    .leave_room(a.conversation_id, a.user_id, Some(user))
                    .await?
                {
                    self.membership_changed(a.conversation_id, a.user_id, "removed", user);
                }
                raw(&json!({}))
            }
            "room_leave" => {
                let a: protocol::ConversationArgs = args(raw_args)?;
                if self.store.leave_room(a.conversation_id, user, None).await? {
                    self.membership_changed(a.conversation_id, user, "left", user);
                }
                raw(&json!({}))
            }
            "room_members" => {
                let a: protocol::ConversationArgs = args(raw_args)?;
                self.require_member(a.conversation_id, user).await?;
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
            "rooms_public" => {
                let a: protocol::LimitArgs = args(raw_args)?;
                let limit = a.limit.unwrap_or(50).clamp(1, PUBLIC_ROOMS_MAX);
                raw(&json!({ "rooms": self.store.public_rooms(limit).await? }))
            }
            "conversations" => {
                let _: protocol::LimitArgs = args(raw_args)?;
                raw(&json!({ "conversations": self.store.conversations_of(user).await? }))
            }
            "send" => self.send(caller, args(raw_args)?).await,
            "history" => {
                let a: protocol::HistoryArgs = args(raw_args)?;
                self.require_member(a.conversation_id, user).await?;
                let range = match (a.before_seq, a.after_seq) {
                    (Some(_), Some(_)) => {
                        return Err(Error::InvalidArgs(
                            "give before_seq or after_seq, not both".into(),
                        ))
                    }
                    (Some(before), None) => Range::Before(before),
                    (None, Some(after)) => Range::After(after),
                    (None, None) => Range::Latest,
                };
                let page = self
                    .store
                    .history(a.conversation_id, range, self.page_limit(a.limit, 50))
                    .await?;
                let mut budget = REPLY_BYTES_MAX;
                let page = fit_page(page, !matches!(range, Range::After(_)), &mut budget);
                raw(&json!({ "messages": page.messages, "has_more": page.has_more }))
            }
            "sync" => self.sync(user, args(raw_args)?).await,
            "read" => {
                let a: protocol::ReadArgs = args(raw_args)?;
                let read_seq = self.store.mark_read(a.conversation_id, user, a.seq).await?;
                let frame = protocol::event(
                    "read",
                    &json!({ "conversation_id": a.conversation_id, "user_id": user, "seq": read_seq }),
                );
                self.bus.publish(Delivery::Conversation {
                    conversation_id: a.conversation_id,
                    frame,
                    skip_conn: caller.conn_id,
                    skip_user: 0,
                });
                raw(&json!({ "read_seq": read_seq }))
            }
            "typing" => {
                let a: protocol::ConversationArgs = args(raw_args)?;
                self.require_member(a.conversation_id, user).await?;
                let frame = protocol::event(
                    "typing",
                    &json!({ "conversation_id": a.conversation_id, "user_id": user }),
                );
                self.bus.publish(Delivery::Conversation {
                    conversation_id: a.conversation_id,
                    frame,
                    skip_conn: caller.conn_id,
                    skip_user: user,
                });
                raw(&json!({}))
            }
            "presence" => {
                let a: protocol::PresenceArgs = args(raw_args)?;
                let mut seen = HashSet::new();
                let watched: Vec<UserId> = a
                    .user_ids
                    .into_iter()
                    .filter(|id| seen.insert(*id))
                    .collect();
                if watched.len() > PRESENCE_WATCH_MAX {
                    return Err(Error::InvalidArgs(format!(
                        "at most {PRESENCE_WATCH_MAX} user_ids"
                    )));
                }
                self.hub.watch_presence(user, caller.conn_id, &watched);
                let presence: Vec<_> = watched
                    .iter()
                    .map(|&id| json!({ "user_id": id, "online": self.bus.is_online(id) }))
                    .collect();
                raw(&json!({ "presence": presence }))
            }
            other => Err(Error::UnknownOp(other.chars().take(64).collect())),
        }
    }

    fn page_limit(&self, asked: Option<usize>, default: usize) -> usize {
        asked
            .unwrap_or(default)
            .clamp(1, self.config.history_page_max)
    }

    async fn require_member(&self, conversation: ConversationId, user: UserId) -> Result<()> {
        if self.store.is_member(conversation, user).await? {
            Ok(())
        } else {
            // Same answer for "absent" and "not yours": ids of other people's conversations stay private.
            Err(Error::Forbidden(
                "you are not a member of this conversation",
            ))
        }
    }

    async fn open_direct(&self, user: UserId, peer: UserId) -> Result<ConversationId> {
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

    async fn send(&self, caller: Caller, a: protocol::SendArgs) -> Result<Box<RawValue>> {
        validate::cmid(&a.cmid)?;
        validate::content(
            a.kind,
            &a.content,
            self.config.max_text_chars,
            self.config.max_custom_bytes,
        )?;
        let conversation_id = match (a.conversation_id, a.to_user) {
            (Some(id), None) => id,
            (None, Some(peer)) => self.open_direct(caller.user_id, peer).await?,
            _ => {
                return Err(Error::InvalidArgs(
                    "give exactly one of conversation_id and to_user".into(),
                ))
            }
        };
        // The store checks membership inside the commit and pushes through its commit hook, in seq order.
        let appended = self
            .store
            .append(
                NewMessage {
                    conversation_id,
                    sender_id: caller.user_id,
                    cmid: a.cmid,
                    kind: a.kind,
                    content: a.content,
                },
                caller.conn_id,
            )
            .await?;
        // The hot path: serialise the ack straight from the message, without an intermediate JSON tree.
        #[derive(Serialize)]
        struct SendResult<'a> {
            message: &'a Message,
            duplicate: bool,
        }
        raw(&SendResult {
            message: &appended.message,
            duplicate: appended.duplicate,
        })
    }

    async fn sync(&self, user: UserId, a: protocol::SyncArgs) -> Result<Box<RawValue>> {
        let mut cursors = std::collections::HashMap::with_capacity(a.cursors.len());
        for (key, seq) in &a.cursors {
            let id: ConversationId = key.parse().map_err(|_| {
                Error::InvalidArgs(format!("cursor key `{key}` is not a conversation id"))
            })?;
            cursors.insert(id, *seq);
        }
        let limit = self.page_limit(a.limit, 100);
        let mut budget = REPLY_BYTES_MAX;
        let mut out = Vec::new();
        for conversation in self.store.conversations_of(user).await? {
            let cursor = cursors.get(&conversation.id).copied().unwrap_or(0).max(0);
            if conversation.last_seq <= cursor {
                continue;
            }
            let page = self
                .store
                .history(conversation.id, Range::After(cursor), limit)
                .await?;
            let page = fit_page(page, false, &mut budget);
            out.push(json!({ "conversation": conversation, "messages": page.messages, "has_more": page.has_more }));
        }
        raw(&json!({ "conversations": out }))
    }
}

/// Trims a page to the reply byte budget, keeping at least one message so that paging always progresses.
/// `keep_newest` keeps the end of the page (paging backwards), otherwise its start. A trimmed page has more.
fn fit_page(mut page: Page, keep_newest: bool, budget: &mut usize) -> Page {
    if keep_newest {
        page.messages.reverse();
    }
    let mut kept = 0;
    for message in &page.messages {
        let size = serde_json::to_string(message).map_or(0, |s| s.len());
        if kept > 0 && size > *budget {
            break;
        }
        *budget = budget.saturating_sub(size);
        kept += 1;
    }
    if kept < page.messages.len() {
        page.messages.truncate(kept);
        page.has_more = true;
    }
    if keep_newest {
        page.messages.reverse();
    }
    page
}

/// Called for every committed message with the connection that sent it.
pub type CommitHook = Arc<dyn Fn(&Message, u64) + Send + Sync>;

/// The commit hook fed from the store's commit sink: every committed message becomes one encoded `message` push.
pub fn commit_hook(bus: Arc<dyn Bus>, metrics: crate::metrics::Metrics) -> CommitHook {
    Arc::new(move |message: &Message, origin: u64| {
        metrics.messages_committed.inc();
        let frame = protocol::event("message", message);
        bus.publish(Delivery::Conversation {
            conversation_id: message.conversation_id,
            frame,
            skip_conn: origin,
            skip_user: 0,
        });
    })
}

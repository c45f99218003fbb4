//! Domain types shared by the store, the chat service and the wire protocol.

use serde::{Deserialize, Serialize};

pub type UserId = i64;
pub type ConversationId = i64;
/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Current server time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub display_name: String,
    /// An https URL or a xindao media path (`/v1/media/...`); absent when the user has set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConversationKind {
    Direct,
    Room,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Public,
    Invite,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Member,
}

/// Message payload kinds: plain text, or app-defined JSON.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    #[default]
    Text,
    Custom,
}

impl MessageKind {
    /// The name stored in the database (and used on the wire).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Custom => "custom",
        }
    }

    /// Reads a stored name back; anything unknown is text.
    pub fn from_stored(name: &str) -> MessageKind {
        if name == "custom" {
            MessageKind::Custom
        } else {
            MessageKind::Text
        }
    }
}

/// A committed message, exactly as clients see it. A tombstone (`state` set) keeps its id, seq, sender and
/// time but has no content (`null` here, absent on the wire): seqs stay gap-free.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub id: i64,
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub sender_id: UserId,
    pub cmid: String,
    pub kind: MessageKind,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub content: serde_json::Value,
    pub ts: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<MessageState>,
}

/// What became of a message after it was sent (docs/protocol.md, "Recall, remove, hide").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    /// Taken back by its sender within `recall_window_secs`: gone for everyone.
    Recalled,
    /// Removed by the room's owner (or the server API): gone for everyone.
    Removed,
    /// Deleted for one user only (their devices); the others still see it.
    Hidden,
}

impl MessageState {
    /// The name stored in the database (and used on the wire).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Recalled => "recalled",
            MessageState::Removed => "removed",
            MessageState::Hidden => "hidden",
        }
    }

    /// Reads a stored name back; `None` (a normal message) for anything else.
    pub fn from_stored(name: &str) -> Option<MessageState> {
        match name {
            "recalled" => Some(MessageState::Recalled),
            "removed" => Some(MessageState::Removed),
            "hidden" => Some(MessageState::Hidden),
            _ => None,
        }
    }
}

impl Message {
    /// This message as a tombstone in `state`: no content.
    pub fn tombstone(mut self, state: MessageState) -> Message {
        self.erase(state);
        self
    }

    /// Turns this message into its tombstone in `state`, in place.
    pub fn erase(&mut self, state: MessageState) {
        self.content = serde_json::Value::Null;
        self.state = Some(state);
    }
}

/// A change of a user's own profile; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    /// An already validated display name.
    pub display_name: Option<String>,
    /// `Some(None)` clears the avatar; `Some(Some(url))` sets an already validated URL.
    pub avatar_url: Option<Option<String>>,
}

/// A conversation as seen by one member (read state and unread count are per member).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Conversation {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub visibility: Option<Visibility>,
    pub owner_id: Option<UserId>,
    pub peer: Option<User>,
    pub last_seq: i64,
    pub read_seq: i64,
    pub unread: i64,
    pub last_message: Option<Message>,
    /// Time of the last message, or of the creation: what `conversations` orders by.
    pub last_ts: Millis,
}

/// Where a page of `conversations` (most recent activity first) continues: after this conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityCursor {
    pub last_ts: Millis,
    pub id: ConversationId,
}

impl ActivityCursor {
    /// The cursor just after `conversation`.
    pub fn after(conversation: &Conversation) -> ActivityCursor {
        ActivityCursor {
            last_ts: conversation.last_ts,
            id: conversation.id,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    pub user: User,
    pub role: Role,
    pub read_seq: i64,
    pub joined_at: Millis,
}

/// Where a page of a room's members (longest-standing first) continues: after this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberCursor {
    pub joined_at: Millis,
    pub user_id: UserId,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PublicRoom {
    pub id: ConversationId,
    pub name: String,
    pub members: i64,
}

/// A message a client asked to send, already validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation_id: ConversationId,
    pub sender_id: UserId,
    pub cmid: String,
    pub kind: MessageKind,
    pub content: serde_json::Value,
}

/// What `append` did: stored a new message, or found the sender's earlier one with the same cmid.
#[derive(Debug, Clone)]
pub struct Appended {
    pub message: Message,
    pub duplicate: bool,
}

/// A page of messages in ascending seq order.
#[derive(Debug, Clone)]
pub struct Page {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// Which slice of a conversation's history to read.
#[derive(Debug, Clone, Copy)]
pub enum Range {
    Latest,
    Before(i64),
    After(i64),
}

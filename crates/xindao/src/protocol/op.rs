//! The operations of the wire protocol, one variant each with its typed arguments (docs/protocol.md,
//! "Operations"). Adding an operation means a variant here, a function in `chat/`, one arm in `Chat::handle`
//! and a row in the protocol doc.
//!
//! The enum is tagged on the envelope's `op` with its `args` beside it, the way serde reads an adjacently
//! tagged enum; [`Op::decode`] feeds it the two raw fields so the name is matched first and only that
//! operation's arguments are parsed. Argument types reject what no operation means: negative seqs, a `limit`
//! of 0, unknown fields.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;

use serde::de::value::{BorrowedStrDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Unexpected, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::model::{ConversationId, MessageKind, UserId, Visibility};

/// One request's operation and its arguments.
#[derive(Debug, Deserialize, strum::IntoStaticStr)]
#[serde(tag = "op", content = "args", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Op {
    Ping(NoArgs),
    UserFind(UserFindArgs),
    DirectOpen(DirectOpenArgs),
    RoomCreate(RoomCreateArgs),
    RoomJoin(ConversationArgs),
    RoomAdd(RoomMemberArgs),
    RoomRemove(RoomMemberArgs),
    RoomLeave(ConversationArgs),
    RoomMembers(RoomMembersArgs),
    RoomsPublic(LimitArgs),
    Conversations(ConversationsArgs),
    Send(SendArgs),
    History(HistoryArgs),
    Sync(SyncArgs),
    Read(ReadArgs),
    Typing(ConversationArgs),
    Presence(PresenceArgs),
    ProfileSet(ProfileSetArgs),
    UserSearch(UserSearchArgs),
    Contacts(ContactsArgs),
    Recall(MessageRefArgs),
    MessageRemove(MessageRefArgs),
    Hide(MessageRefArgs),
    MediaUrl(MediaUrlArgs),
    ClientStats(ClientStatsArgs),
    NotifyGrant(NotifyGrantArgs),
    AuthRefresh(AuthRefreshArgs),
}

impl Op {
    /// The operation's wire name (`"send"`), e.g. for metrics.
    pub fn name(&self) -> &'static str {
        self.into()
    }

    /// Decodes an operation from the envelope's raw `op` (a JSON string) and `args` (absent or `null`: `{}`).
    /// `unknown_op` when the name is none of ours, `invalid_args` when the arguments do not fit it.
    pub fn decode(name: &RawValue, args: Option<&RawValue>) -> Result<Op> {
        let mut fields = OpFields {
            name,
            args: args.filter(|args| args.get() != "null"),
            next: 0,
            unknown_name: false,
        };
        Op::deserialize(&mut fields).map_err(|e| {
            if fields.unknown_name {
                let name: String = serde_json::from_str(name.get()).unwrap_or_default();
                Error::UnknownOp(name.chars().take(64).collect())
            } else {
                Error::InvalidArgs(format!("invalid args: {e}"))
            }
        })
    }
}

/// The `op` and `args` of an envelope presented to serde as a two-entry map, name first.
struct OpFields<'a> {
    name: &'a RawValue,
    args: Option<&'a RawValue>,
    next: u8,
    /// Set when the name matched no variant, to tell `unknown_op` from `invalid_args`.
    unknown_name: bool,
}

impl<'de> Deserializer<'de> for &mut OpFields<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> MapAccess<'de> for &mut OpFields<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let key = match self.next {
            0 => "op",
            1 => "args",
            _ => return Ok(None),
        };
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.next += 1;
        if self.next == 1 {
            let name = seed.deserialize(self.name);
            self.unknown_name = name.is_err();
            return name;
        }
        match self.args {
            // serde_json reads a struct from an array too; arguments are named, so only an object will do.
            Some(args) if !args.get().starts_with('{') => {
                Err(de::Error::custom("`args` must be a JSON object"))
            }
            Some(args) => seed.deserialize(args),
            None => seed.deserialize(&mut serde_json::Deserializer::from_str("{}")),
        }
    }
}

// ---- Argument types ----

/// Arguments of an operation that takes none; whatever object is sent is ignored.
#[derive(Debug, Deserialize)]
pub struct NoArgs {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationArgs {
    pub conversation_id: ConversationId,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFindArgs {
    pub display_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectOpenArgs {
    pub user_id: UserId,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomCreateArgs {
    pub name: String,
    #[serde(default)]
    pub visibility: Visibility,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomMemberArgs {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitArgs {
    pub limit: Option<NonZeroUsize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomMembersArgs {
    pub conversation_id: ConversationId,
    pub limit: Option<NonZeroUsize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationsArgs {
    pub limit: Option<NonZeroUsize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendArgs {
    pub conversation_id: Option<ConversationId>,
    pub to_user: Option<UserId>,
    pub cmid: String,
    #[serde(default)]
    pub kind: SentKind,
    #[serde(default)]
    pub content: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaUrlArgs {
    /// One medium...
    pub media_id: Option<String>,
    /// ...or up to [`MEDIA_URL_BATCH_MAX`] at once (a page of history).
    pub media_ids: Option<Vec<String>>,
}

/// `client_stats`: the client's round trips since its last report, counted in fixed buckets
/// ([`crate::obs::client_rtt::BOUNDS_MS`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientStatsArgs {
    pub kind: ClientKind,
    /// Round trips per bucket: one count per bound, then one for those above the last bound.
    pub buckets: Vec<u32>,
}

/// What a client runs in (a bounded set: a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    Miniprogram,
    Browser,
    Node,
}

/// One-time subscribe-message grants the user accepted in `wx.requestSubscribeMessage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyGrantArgs {
    pub template_id: String,
    /// How many (default 1).
    pub count: Option<u32>,
}

/// `auth_refresh`: the connection's next credentials, a token of the same user (a JWT, or a session token).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRefreshArgs {
    pub token: String,
}

/// Never prints the token (requests may be logged).
impl fmt::Debug for AuthRefreshArgs {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("AuthRefreshArgs")
            .field("token", &format_args!("<{} bytes>", self.token.len()))
            .finish()
    }
}

/// Most media ids in one `media_url`.
pub const MEDIA_URL_BATCH_MAX: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryArgs {
    pub conversation_id: ConversationId,
    pub before_seq: Option<Seq>,
    pub after_seq: Option<Seq>,
    pub limit: Option<NonZeroUsize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncArgs {
    /// Last seq seen per conversation; the keys are conversation ids as JSON object keys (strings).
    #[serde(default)]
    pub cursors: HashMap<String, Seq>,
    pub limit: Option<NonZeroUsize>,
    /// Look only at conversations with an id above this one (the `next_after_id` of the previous reply).
    pub after_id: Option<ConversationId>,
    /// Look only at conversations with an id up to this one (so that `cursors` can be sent a slice at a time).
    pub until_id: Option<ConversationId>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    pub conversation_id: ConversationId,
    pub seq: Seq,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceArgs {
    pub user_ids: Vec<UserId>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSetArgs {
    pub display_name: Option<String>,
    /// `""` clears the avatar.
    pub avatar_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSearchArgs {
    pub prefix: String,
    pub limit: Option<NonZeroUsize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsArgs {
    pub limit: Option<NonZeroUsize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One message: `recall`, `message_remove`, `hide`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRefArgs {
    pub conversation_id: ConversationId,
    pub seq: Seq,
}

/// A seq given by a client (a cursor, a bound, a read mark): an integer >= 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seq(pub i64);

impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Seq, D::Error> {
        let seq = i64::deserialize(deserializer)?;
        if seq < 0 {
            return Err(de::Error::invalid_value(
                Unexpected::Signed(seq),
                &"a seq >= 0",
            ));
        }
        Ok(Seq(seq))
    }
}

/// The `kind` of a sent message as named by the client. A name the server does not know is well-formed
/// arguments but a bad message, so `send` answers it with `invalid_message`; a `kind` that is not a string is
/// `invalid_args`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentKind {
    Known(MessageKind),
    Unknown(String),
}

impl Default for SentKind {
    fn default() -> Self {
        SentKind::Known(MessageKind::default())
    }
}

impl<'de> Deserialize<'de> for SentKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SentKind, D::Error> {
        struct KindVisitor;
        impl Visitor<'_> for KindVisitor {
            type Value = SentKind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message kind name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<SentKind, E> {
                Ok(
                    match MessageKind::deserialize(StrDeserializer::<E>::new(name)) {
                        Ok(kind) => SentKind::Known(kind),
                        Err(_) => SentKind::Unknown(name.chars().take(64).collect()),
                    },
                )
            }
        }
        deserializer.deserialize_str(KindVisitor)
    }
}

#[cfg(test)]
#[path = "op_tests.rs"]
mod tests;

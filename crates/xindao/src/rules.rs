//! The rules of rooms and sessions, as plain functions of the facts they depend on.
//!
//! A store reads the facts inside its own transaction (under the room's row lock on PostgreSQL, on the single
//! writer connection on SQLite), asks the rule, and applies the answer before committing: the rule is written
//! once and the check cannot race the write it guards. The errors returned here are the ones clients see
//! (docs/protocol.md), so their variants and texts are part of the protocol.

use crate::error::{Error, Result};
use crate::model::{ConversationKind, Millis, UserId, Visibility};

#[path = "rules/messages.rs"]
mod messages;
pub use messages::{may_change_message, no_such_message, MessageFacts, StateChange};

/// What the room rules need to know about a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomFacts {
    pub kind: ConversationKind,
    /// `None` for direct conversations.
    pub visibility: Option<Visibility>,
    pub owner_id: Option<UserId>,
}

impl RoomFacts {
    fn invite_only(&self) -> bool {
        self.visibility == Some(Visibility::Invite)
    }
}

/// Who asks for a user to join a room, with the facts about them that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joiner {
    /// The user joins by themselves.
    Themselves,
    /// A member adds them.
    AddedBy {
        adder: UserId,
        /// Whether the adder is a member of the room.
        adder_is_member: bool,
        /// Whether the user being added exists.
        user_exists: bool,
    },
}

/// Whether a user may join (or be added to) a room: anyone may join a public room; any member may add an
/// existing user to a public room; only the owner adds to an invite-only room; direct conversations never
/// change their two members.
pub fn may_join(room: &RoomFacts, joiner: Joiner) -> Result<()> {
    if room.kind != ConversationKind::Room {
        return Err(Error::Forbidden(
            "direct conversations have exactly two members",
        ));
    }
    match joiner {
        Joiner::Themselves if room.invite_only() => {
            Err(Error::Forbidden("this room is invite-only"))
        }
        Joiner::Themselves => Ok(()),
        Joiner::AddedBy {
            adder,
            adder_is_member,
            user_exists,
        } => {
            if !adder_is_member {
                return Err(Error::Forbidden("you are not a member of this room"));
            }
            if room.invite_only() && room.owner_id != Some(adder) {
                return Err(Error::Forbidden(
                    "only the owner adds members to an invite-only room",
                ));
            }
            if !user_exists {
                return Err(Error::NotFound("no such user"));
            }
            Ok(())
        }
    }
}

/// Whether `user` may leave a room (`remover` is `None`) or be removed from it by `remover`: only the owner
/// removes others, and leaves with `room_leave` rather than by removing themselves. Nobody leaves a direct
/// conversation.
pub fn may_leave(room: &RoomFacts, user: UserId, remover: Option<UserId>) -> Result<()> {
    if room.kind != ConversationKind::Room {
        return Err(Error::Forbidden("you cannot leave a direct conversation"));
    }
    if let Some(remover) = remover {
        if room.owner_id != Some(remover) {
            return Err(Error::Forbidden("only the owner removes members"));
        }
        if remover == user {
            return Err(Error::Conflict("the owner leaves with room_leave"));
        }
    }
    Ok(())
}

/// Whether ownership must pass on once `user` has left: it does when the owner leaves, to the
/// longest-standing remaining member (earliest `joined_at`, then lowest user id); an empty room keeps no owner.
pub fn ownership_passes(room: &RoomFacts, user: UserId, removed: bool) -> bool {
    removed && room.owner_id == Some(user)
}

/// Whether two users may have a direct conversation: they must be two different users.
pub fn may_open_direct(user: UserId, peer: UserId) -> Result<()> {
    if user == peer {
        return Err(Error::Conflict(
            "a direct conversation needs two different users",
        ));
    }
    Ok(())
}

/// The refusal for someone who names a conversation they are not a member of (to send, read or mark it).
pub fn not_a_member() -> Error {
    Error::Forbidden("you are not a member of this conversation")
}

/// A conversation the caller cannot see: `forbidden` when it exists, `not_found` when it does not.
pub fn unseen_conversation(exists: bool) -> Error {
    if exists {
        not_a_member()
    } else {
        no_such_conversation()
    }
}

/// The answer for a conversation id that names nothing.
pub fn no_such_conversation() -> Error {
    Error::NotFound("no such conversation")
}

/// How many conversations one user may be in, and how many rooms one user may own (config
/// `max_memberships_per_user`, `max_rooms_per_owner`). Without them any room owner could add a victim to rooms
/// without end (no consent is asked), and every list the victim reads would grow with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub memberships_per_user: u64,
    pub rooms_per_owner: u64,
}

/// Default of `max_memberships_per_user`.
pub const MEMBERSHIPS_PER_USER_DEFAULT: u64 = 10_000;
/// Default of `max_rooms_per_owner`.
pub const ROOMS_PER_OWNER_DEFAULT: u64 = 1_000;

impl Default for Caps {
    fn default() -> Self {
        Caps {
            memberships_per_user: MEMBERSHIPS_PER_USER_DEFAULT,
            rooms_per_owner: ROOMS_PER_OWNER_DEFAULT,
        }
    }
}

/// Whose membership a new conversation or member would add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newcomer {
    /// The caller: creating, joining or opening.
    Caller,
    /// Someone else: the user added to a room, or the peer of a new direct conversation.
    Other,
}

/// Whether a user in `memberships` conversations may be in one more. Leaving is never capped, so a user over
/// the cap (e.g. after an operator lowered it) can always get back under it.
pub fn may_gain_membership(memberships: u64, caps: &Caps, who: Newcomer) -> Result<()> {
    if memberships < caps.memberships_per_user {
        return Ok(());
    }
    Err(Error::LimitReached(match who {
        Newcomer::Caller => "you are in the maximum number of conversations: leave one first",
        Newcomer::Other => "that user is in the maximum number of conversations",
    }))
}

/// Whether a user who owns `owned` rooms may create another. Ownership passed on by a leaving owner is not
/// capped (nobody chose it).
pub fn may_create_room(owned: u64, caps: &Caps) -> Result<()> {
    if owned < caps.rooms_per_owner {
        Ok(())
    } else {
        Err(Error::LimitReached("you own the maximum number of rooms"))
    }
}

/// What to do with a session found by its token at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionTouch {
    /// Expired: as if it did not exist.
    Expired,
    /// Valid, and extended recently enough: no write.
    Valid { expires_at: Millis },
    /// Valid; store `extended_at = now` and the new expiry.
    Extend { expires_at: Millis },
}

/// Whether a session's expiry moves with use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionExpiry {
    /// A login's session: `session_ttl` after its last use ([`touch_session`]).
    Sliding,
    /// A business JWT's session: it ends at the token's `exp`, whatever its use.
    Fixed,
}

impl SessionExpiry {
    /// The `extended_at` a new session is stored with. A fixed one is stored as extended at its own expiry:
    /// no use before it expires is a tenth of a ttl past that, so [`touch_session`] never slides it, and no
    /// column tells the two kinds apart ([`SessionExpiry::of`] reads it back).
    pub fn extended_at(self, now: Millis, expires_at: Millis) -> Millis {
        match self {
            SessionExpiry::Sliding => now,
            SessionExpiry::Fixed => expires_at,
        }
    }

    /// The kind of a stored session, from its `extended_at` and `expires_at`.
    pub fn of(extended_at: Millis, expires_at: Millis) -> SessionExpiry {
        if extended_at >= expires_at {
            SessionExpiry::Fixed
        } else {
            SessionExpiry::Sliding
        }
    }
}

/// Sliding expiry without a write per call: a session is valid until `expires_at`, and a use extends it to
/// `now + ttl_ms` only once the previous extension is at least a tenth of `ttl_ms` old. A fixed session
/// ([`SessionExpiry::Fixed`]) is never extended.
pub fn touch_session(
    extended_at: Millis,
    expires_at: Millis,
    now: Millis,
    ttl_ms: i64,
) -> SessionTouch {
    if expires_at <= now {
        SessionTouch::Expired
    } else if SessionExpiry::of(extended_at, expires_at) == SessionExpiry::Fixed
        || now - extended_at < ttl_ms / 10
    {
        SessionTouch::Valid { expires_at }
    } else {
        SessionTouch::Extend {
            expires_at: now + ttl_ms,
        }
    }
}

#[cfg(test)]
#[path = "rules/tests.rs"]
mod tests;

//! Row mapping shared by both backends: the message column list, how stored names read back as domain types,
//! and the mapping of message, user and conversation rows, written once over [`Columns`] (the one thing that
//! differs between rusqlite's and tokio-postgres's rows).

use sha2::{Digest, Sha256};

use crate::model::*;
use crate::rules::RoomFacts;

/// The columns of a message, in the order [`message_at`] reads them.
pub(crate) const MESSAGE_COLUMNS: &str =
    "id, conversation_id, seq, sender_id, cmid, kind, content, created_at, state";

/// How many columns [`MESSAGE_COLUMNS`] has.
pub(crate) const MESSAGE_COLUMNS_LEN: usize = 9;

/// The columns of a user, in the order [`user_at`] reads them.
pub(crate) const USER_COLUMNS: &str = "id, display_name, avatar_url";

/// The display name a WeChat user starts with: `wx_` and six hex digits of the openid's SHA-256.
pub(crate) fn display_name_for_openid(openid: &str) -> String {
    let digest = Sha256::digest(openid.as_bytes());
    format!("wx_{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2])
}

/// Typed access to a result row's columns by position.
pub(crate) trait Columns {
    type Error;
    fn int(&self, at: usize) -> Result<i64, Self::Error>;
    fn int_opt(&self, at: usize) -> Result<Option<i64>, Self::Error>;
    fn text(&self, at: usize) -> Result<String, Self::Error>;
    fn text_opt(&self, at: usize) -> Result<Option<String>, Self::Error>;
}

/// Reads the [`MESSAGE_COLUMNS`] starting at column `at`. Content that is not JSON reads as `null`; a
/// recalled or removed message reads as its tombstone.
pub(crate) fn message_at<R: Columns>(row: &R, at: usize) -> Result<Message, R::Error> {
    let kind = row.text(at + 5)?;
    let raw = row.text(at + 6)?;
    let state = row.text_opt(at + 8)?;
    let message = Message {
        id: row.int(at)?,
        conversation_id: row.int(at + 1)?,
        seq: row.int(at + 2)?,
        sender_id: row.int(at + 3)?,
        cmid: row.text(at + 4)?,
        kind: MessageKind::from_stored(&kind),
        content: serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null),
        ts: row.int(at + 7)?,
        state: None,
    };
    Ok(match state.as_deref().and_then(MessageState::from_stored) {
        Some(state) => message.tombstone(state),
        None => message,
    })
}

/// Reads the [`USER_COLUMNS`] starting at column `at`.
pub(crate) fn user_at<R: Columns>(row: &R, at: usize) -> Result<User, R::Error> {
    Ok(User {
        id: row.int(at)?,
        display_name: row.text(at + 1)?,
        avatar_url: row.text_opt(at + 2)?,
    })
}

/// The members of a conversation `$c`, longest-standing first, after `($ts, $id)`, at most `$limit`, in the
/// columns [`member`] reads; `$...` are the backend's placeholders.
pub(crate) fn members_page_sql(c: &str, ts: &str, id: &str, limit: &str) -> String {
    format!(
        "SELECT u.id, u.display_name, u.avatar_url, m.role, m.read_seq, m.joined_at
         FROM members m JOIN users u ON u.id = m.user_id
         WHERE m.conversation_id = {c} AND (m.joined_at, m.user_id) > ({ts}, {id})
         ORDER BY m.joined_at, m.user_id LIMIT {limit}"
    )
}

/// The bounds of [`members_page_sql`] for a first page: everything is after them.
pub(crate) fn member_bound(cursor: Option<MemberCursor>) -> (i64, i64) {
    cursor.map_or((i64::MIN, i64::MIN), |c| (c.joined_at, c.user_id))
}

/// Reads `u.id, u.display_name, u.avatar_url, m.role, m.read_seq, m.joined_at`.
pub(crate) fn member<R: Columns>(row: &R) -> Result<Member, R::Error> {
    Ok(Member {
        user: user_at(row, 0)?,
        role: role_from_stored(&row.text(3)?),
        read_seq: row.int(4)?,
        joined_at: row.int(5)?,
    })
}

/// Reads `c.id, c.name, <member count>`.
pub(crate) fn public_room<R: Columns>(row: &R) -> Result<PublicRoom, R::Error> {
    Ok(PublicRoom {
        id: row.int(0)?,
        name: row.text(1)?,
        members: row.int(2)?,
    })
}

/// The columns [`conversation_head`] reads, for a conversation `c` joined with the member row `m`.
pub(crate) const CONVERSATION_HEAD: &str =
    "c.id, c.kind, c.name, c.visibility, c.owner_id, c.last_seq, m.read_seq, c.last_ts";

/// How many columns [`CONVERSATION_HEAD`] has.
pub(crate) const CONVERSATION_HEAD_LEN: usize = 8;

/// The `conversations` page filter and order, after `cursor` (most recent activity first). Row values
/// compare lexicographically in both SQLite and PostgreSQL; `$ts` and `$id` are the backend's placeholders.
pub(crate) fn activity_filter(ts: &str, id: &str) -> String {
    format!("AND (c.last_ts, c.id) < ({ts}, {id}) ORDER BY c.last_ts DESC, c.id DESC")
}

/// The bounds of the filter for a first page: nothing is after them.
pub(crate) fn activity_bound(cursor: Option<ActivityCursor>) -> (i64, i64) {
    cursor.map_or((i64::MAX, i64::MAX), |c| (c.last_ts, c.id))
}

/// Reads [`CONVERSATION_HEAD`]; the peer and the last message are left for the caller to fill in.
pub(crate) fn conversation_head<R: Columns>(row: &R) -> Result<Conversation, R::Error> {
    let last_seq = row.int(5)?;
    let read_seq = row.int(6)?;
    Ok(Conversation {
        id: row.int(0)?,
        kind: kind_from_stored(&row.text(1)?),
        name: row.text_opt(2)?,
        visibility: row.text_opt(3)?.as_deref().map(visibility_from_stored),
        owner_id: row.int_opt(4)?,
        peer: None,
        last_seq,
        read_seq,
        unread: (last_seq - read_seq).max(0),
        last_message: None,
        last_ts: row.int(7)?,
    })
}

/// The columns [`room_facts`] reads from `conversations`.
pub(crate) const ROOM_FACTS: &str = "kind, visibility, owner_id";

/// Reads [`ROOM_FACTS`]: what the room rules decide on.
pub(crate) fn room_facts<R: Columns>(row: &R) -> Result<RoomFacts, R::Error> {
    Ok(RoomFacts {
        kind: kind_from_stored(&row.text(0)?),
        visibility: row.text_opt(1)?.as_deref().map(visibility_from_stored),
        owner_id: row.int_opt(2)?,
    })
}

fn kind_from_stored(kind: &str) -> ConversationKind {
    if kind == "direct" {
        ConversationKind::Direct
    } else {
        ConversationKind::Room
    }
}

fn visibility_from_stored(visibility: &str) -> Visibility {
    if visibility == "invite" {
        Visibility::Invite
    } else {
        Visibility::Public
    }
}

fn role_from_stored(role: &str) -> Role {
    if role == "owner" {
        Role::Owner
    } else {
        Role::Member
    }
}

/// The name a visibility is stored under.
pub(crate) fn visibility_name(visibility: Visibility) -> &'static str {
    match visibility {
        Visibility::Public => "public",
        Visibility::Invite => "invite",
    }
}

/// How a history page is selected: `seq <comparison> bound ORDER BY seq <order>`, then `limit + 1` rows (the
/// extra one tells whether there are more).
pub(crate) fn history_filter(range: Range) -> (&'static str, i64, &'static str) {
    match range {
        Range::Latest => (">", 0, "DESC"),
        Range::Before(seq) => ("<", seq, "DESC"),
        Range::After(seq) => (">", seq, "ASC"),
    }
}

/// The page from the rows [`history_filter`] selected (at most `limit + 1`), in ascending seq order.
pub(crate) fn history_page(mut messages: Vec<Message>, range: Range, limit: usize) -> Page {
    let has_more = messages.len() > limit;
    messages.truncate(limit);
    if !matches!(range, Range::After(_)) {
        messages.reverse();
    }
    Page { messages, has_more }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openid_names_are_stable() {
        let name = display_name_for_openid("o-1");
        assert_eq!(name, display_name_for_openid("o-1"));
        assert!(name.starts_with("wx_") && name.len() == 9, "{name}");
        assert_ne!(name, display_name_for_openid("o-2"));
    }
}

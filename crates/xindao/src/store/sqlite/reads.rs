//! Conversation lists, history pages and read markers in the SQLite store: the statements, run by the store
//! on its reader connections (and the writer, for read markers).

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{
    complete_conversation, conversation_row, conversation_select, load_user, read_message,
};
use crate::model::*;
use crate::store::rows::{
    activity_bound, activity_filter, history_filter, history_page, public_room, MESSAGE_COLUMNS,
};

/// The conversation as `user` sees it, `None` when they are not a member (or it does not exist).
pub(super) fn conversation_for(
    conn: &Connection,
    conversation: ConversationId,
    user: UserId,
) -> rusqlite::Result<Option<Conversation>> {
    let row = conn
        .prepare_cached(&format!(
            "{} WHERE m.user_id = ?1 AND c.id = ?2",
            conversation_select()
        ))?
        .query_row(params![user, conversation], conversation_row)
        .optional()?;
    row.map(|row| complete_conversation(conn, user, row))
        .transpose()
}

pub(super) fn conversation_exists(
    conn: &Connection,
    conversation: ConversationId,
) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")?
        .exists([conversation])
}

/// A page of the conversations of `user`, most recent activity first, after `cursor`.
pub(super) fn conversations_page(
    conn: &Connection,
    user: UserId,
    cursor: Option<ActivityCursor>,
    limit: usize,
) -> rusqlite::Result<Vec<Conversation>> {
    let (ts, id) = activity_bound(cursor);
    let rows: Vec<_> = conn
        .prepare_cached(&format!(
            "{} WHERE m.user_id = ?1 {} LIMIT ?4",
            conversation_select(),
            activity_filter("?2", "?3")
        ))?
        .query_map(params![user, ts, id, limit as i64], conversation_row)?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|row| complete_conversation(conn, user, row))
        .collect()
}

/// The id and last seq of the conversations of `user` in `(after, until]`, ascending, at most `limit`.
pub(super) fn sync_scan(
    conn: &Connection,
    user: UserId,
    after: ConversationId,
    until: Option<ConversationId>,
    limit: usize,
) -> rusqlite::Result<Vec<(ConversationId, i64)>> {
    conn.prepare_cached(
        "SELECT c.id, c.last_seq FROM members m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.user_id = ?1 AND m.conversation_id > ?2 AND m.conversation_id <= ?3
         ORDER BY m.conversation_id LIMIT ?4",
    )?
    .query_map(
        params![user, after, until.unwrap_or(i64::MAX), limit as i64],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?
    .collect()
}

/// Those of `others` who share a conversation with `user`.
pub(super) fn sharing_with(
    conn: &Connection,
    user: UserId,
    others: &[UserId],
) -> rusqlite::Result<Vec<UserId>> {
    let mut shared = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT 1 FROM members mine JOIN members theirs ON theirs.conversation_id = mine.conversation_id
         WHERE mine.user_id = ?1 AND theirs.user_id = ?2 LIMIT 1",
    )?;
    for &other in others {
        if other == user || stmt.exists(params![user, other])? {
            shared.push(other);
        }
    }
    Ok(shared)
}

/// The user and the ids of all their conversations.
pub(super) fn connection_state(
    conn: &Connection,
    user: UserId,
) -> rusqlite::Result<Option<(User, Vec<ConversationId>)>> {
    let Some(found) = load_user(conn, user)? else {
        return Ok(None);
    };
    let conversations = conn
        .prepare_cached("SELECT conversation_id FROM members WHERE user_id = ?1")?
        .query_map([user], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some((found, conversations)))
}

pub(super) fn is_member(
    conn: &Connection,
    conversation: ConversationId,
    user: UserId,
) -> rusqlite::Result<bool> {
    super::rows::member_exists(conn, conversation, user)
}

pub(super) fn public_rooms(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<PublicRoom>> {
    conn.prepare_cached(
        "SELECT c.id, c.name, (SELECT COUNT(*) FROM members m WHERE m.conversation_id = c.id)
         FROM conversations c WHERE c.kind = 'room' AND c.visibility = 'public'
         ORDER BY c.last_ts DESC LIMIT ?1",
    )?
    .query_map([limit as i64], |row| public_room(row))?
    .collect()
}

/// One page of a conversation's messages, in ascending seq order.
pub(super) fn history(
    conn: &Connection,
    conversation: ConversationId,
    range: Range,
    limit: usize,
) -> rusqlite::Result<Page> {
    let (comparison, bound, order) = history_filter(range);
    let messages = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq {comparison} ?2
             ORDER BY seq {order} LIMIT ?3"
        ))?
        .query_map(params![conversation, bound, limit as i64 + 1], read_message)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(history_page(messages, range, limit))
}

/// Moves the read marker forward to `seq` (capped at last_seq); `None` when `user` is not a member.
pub(super) fn mark_read(
    conn: &Connection,
    conversation: ConversationId,
    user: UserId,
    seq: i64,
) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "UPDATE members SET read_seq = MAX(read_seq,
            MIN(?3, (SELECT last_seq FROM conversations WHERE id = ?1)))
         WHERE conversation_id = ?1 AND user_id = ?2 RETURNING read_seq",
        params![conversation, user, seq],
        |row| row.get(0),
    )
    .optional()
}

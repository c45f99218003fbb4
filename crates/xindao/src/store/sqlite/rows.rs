//! rusqlite's side of the shared row mapping, and the small lookups the SQLite store's reads and writes share.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::map_sqlite;
use crate::error::Result;
use crate::model::*;
use crate::rules::{self, RoomFacts};
use crate::store::rows::{
    self, Columns, CONVERSATION_HEAD, CONVERSATION_HEAD_LEN, MESSAGE_COLUMNS, ROOM_FACTS,
};

impl Columns for Row<'_> {
    type Error = rusqlite::Error;
    fn int(&self, at: usize) -> rusqlite::Result<i64> {
        self.get(at)
    }
    fn int_opt(&self, at: usize) -> rusqlite::Result<Option<i64>> {
        self.get(at)
    }
    fn text(&self, at: usize) -> rusqlite::Result<String> {
        self.get(at)
    }
    fn text_opt(&self, at: usize) -> rusqlite::Result<Option<String>> {
        self.get(at)
    }
}

pub(super) fn read_message(row: &Row<'_>) -> rusqlite::Result<Message> {
    rows::message_at(row, 0)
}

pub(super) fn read_user(row: &Row) -> rusqlite::Result<User> {
    rows::user_at(row, 0)
}

/// The sender's message with this cmid, if any.
pub(super) fn message_by_cmid(
    conn: &Connection,
    sender: UserId,
    cmid: &str,
) -> rusqlite::Result<Option<Message>> {
    conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = ?1 AND cmid = ?2"
    ))?
    .query_row(params![sender, cmid], read_message)
    .optional()
}

/// A conversation as its member `m` sees it, and the pair of a direct one (to find the peer).
pub(super) fn conversation_select() -> String {
    format!(
        "SELECT {CONVERSATION_HEAD}, c.direct_lo, c.direct_hi
         FROM members m JOIN conversations c ON c.id = m.conversation_id"
    )
}

pub(super) type ConversationRow = (Conversation, Option<(i64, i64)>);

pub(super) fn conversation_row(row: &Row) -> rusqlite::Result<ConversationRow> {
    let pair = row
        .get::<_, Option<i64>>(CONVERSATION_HEAD_LEN)?
        .zip(row.get(CONVERSATION_HEAD_LEN + 1)?);
    Ok((rows::conversation_head(row)?, pair))
}

/// Fills in the peer of a direct conversation and the last message.
pub(super) fn complete_conversation(
    conn: &Connection,
    user: UserId,
    (mut conversation, pair): ConversationRow,
) -> rusqlite::Result<Conversation> {
    if let Some((lo, hi)) = pair {
        let peer_id = if lo == user { hi } else { lo };
        conversation.peer = load_user(conn, peer_id)?;
    }
    if conversation.last_seq > 0 {
        conversation.last_message = conn
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq = ?2"
            ))?
            .query_row(
                params![conversation.id, conversation.last_seq],
                read_message,
            )
            .optional()?;
        if conversation.last_message.is_some()
            && is_hidden(conn, user, conversation.id, conversation.last_seq)?
        {
            conversation.last_message = conversation
                .last_message
                .map(|m| m.tombstone(MessageState::Hidden));
        }
    }
    Ok(conversation)
}

/// Whether `user` hid this message (delete-for-me).
pub(super) fn is_hidden(
    conn: &Connection,
    user: UserId,
    conversation: ConversationId,
    seq: i64,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM hidden_messages WHERE user_id = ?1 AND conversation_id = ?2 AND seq = ?3",
    )?
    .exists(params![user, conversation, seq])
}

pub(super) fn load_user(conn: &Connection, id: UserId) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached("SELECT id, display_name, avatar_url FROM users WHERE id = ?1")?
        .query_row([id], read_user)
        .optional()
}

/// What the room rules decide on; `NotFound` for an unknown conversation.
pub(super) fn room_facts(conn: &Connection, conversation: ConversationId) -> Result<RoomFacts> {
    conn.prepare_cached(&format!(
        "SELECT {ROOM_FACTS} FROM conversations WHERE id = ?1"
    ))
    .and_then(|mut stmt| {
        stmt.query_row([conversation], |row| rows::room_facts(row))
            .optional()
    })
    .map_err(map_sqlite)?
    .ok_or_else(rules::no_such_conversation)
}

pub(super) fn member_exists(
    conn: &Connection,
    conversation: ConversationId,
    user: UserId,
) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM members WHERE conversation_id = ?1 AND user_id = ?2")?
        .exists(params![conversation, user])
}

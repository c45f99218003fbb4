//! tokio-postgres's side of the shared row mapping, and how PostgreSQL errors map to ours.

use tokio_postgres::Row;

use crate::model::*;
use crate::store::rows::{
    self, Columns, CONVERSATION_HEAD, CONVERSATION_HEAD_LEN, MESSAGE_COLUMNS_LEN,
};

type Pg<T> = Result<T, tokio_postgres::Error>;

pub(crate) use crate::store::backend_errors::map_pg;

impl Columns for Row {
    type Error = tokio_postgres::Error;
    fn int(&self, at: usize) -> Pg<i64> {
        self.try_get(at)
    }
    fn int_opt(&self, at: usize) -> Pg<Option<i64>> {
        self.try_get(at)
    }
    fn text(&self, at: usize) -> Pg<String> {
        self.try_get(at)
    }
    fn text_opt(&self, at: usize) -> Pg<Option<String>> {
        self.try_get(at)
    }
}

/// Maps every row with `read`.
pub(super) fn all<T>(rows: &[Row], read: impl Fn(&Row) -> Pg<T>) -> crate::error::Result<Vec<T>> {
    rows.iter().map(|row| read(row).map_err(map_pg)).collect()
}

pub(super) fn message(row: &Row) -> Pg<Message> {
    rows::message_at(row, 0)
}

pub(super) fn user(row: &Row) -> Pg<User> {
    rows::user_at(row, 0)
}

/// One conversation as a member sees it, with its peer and last message, in one query.
pub(super) fn conversation_select() -> String {
    format!(
        "SELECT {CONVERSATION_HEAD}, p.id, p.display_name, p.avatar_url,
            lm.id, lm.conversation_id, lm.seq, lm.sender_id, lm.cmid, lm.kind, lm.content, lm.created_at,
            lm.state, hm.seq
        FROM members m JOIN conversations c ON c.id = m.conversation_id
        LEFT JOIN users p ON c.kind = 'direct'
            AND p.id = CASE WHEN c.direct_lo = m.user_id THEN c.direct_hi ELSE c.direct_lo END
        LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = c.last_seq
        LEFT JOIN hidden_messages hm ON hm.user_id = m.user_id AND hm.conversation_id = c.id
            AND hm.seq = c.last_seq"
    )
}

/// Reads a row of [`conversation_select`].
pub(super) fn conversation(row: &Row) -> Pg<Conversation> {
    let mut conversation = rows::conversation_head(row)?;
    let peer = CONVERSATION_HEAD_LEN;
    if row.int_opt(peer)?.is_some() {
        conversation.peer = Some(rows::user_at(row, peer)?);
    }
    let last = peer + 3;
    if row.int_opt(last)?.is_some() {
        let message = rows::message_at(row, last)?;
        // Hidden by this member (delete-for-me): their tombstone.
        let hidden = row.int_opt(last + MESSAGE_COLUMNS_LEN)?.is_some();
        conversation.last_message = Some(if hidden {
            message.tombstone(MessageState::Hidden)
        } else {
            message
        });
    }
    Ok(conversation)
}

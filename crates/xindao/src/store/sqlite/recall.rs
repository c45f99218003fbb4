//! Recall, remove and hide in the SQLite store: each one transaction on the writer connection (SQLite's only
//! writer, so the facts the rule reads cannot change before the tombstone commits).

use rusqlite::{params, Connection, OptionalExtension};

use super::map_sqlite;
use super::rows::{member_exists, read_message, room_facts};
use crate::error::{Error, Result};
use crate::model::*;
use crate::rules::{self, MessageFacts, StateChange};
use crate::store::rows::MESSAGE_COLUMNS;

/// Writes the tombstone if [`rules::may_change_message`] allows it; `None` when it already was one.
pub(super) fn set_state(
    conn: &mut Connection,
    conversation: ConversationId,
    seq: i64,
    change: StateChange,
) -> Result<Option<Message>> {
    let tx = conn.transaction().map_err(map_sqlite)?;
    let room = match room_facts(&tx, conversation) {
        Ok(room) => Some(room),
        Err(Error::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let member = match change.by() {
        Some(by) => member_exists(&tx, conversation, by).map_err(map_sqlite)?,
        None => false,
    };
    let facts = tx
        .prepare_cached(
            "SELECT sender_id, created_at, state FROM messages WHERE conversation_id = ?1 AND seq = ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![conversation, seq], |row| {
                Ok(MessageFacts {
                    sender_id: row.get(0)?,
                    ts: row.get(1)?,
                    state: row
                        .get::<_, Option<String>>(2)?
                        .as_deref()
                        .and_then(MessageState::from_stored),
                })
            })
            .optional()
        })
        .map_err(map_sqlite)?;
    let Some(state) = rules::may_change_message(room.as_ref(), member, facts.as_ref(), change)?
    else {
        return Ok(None);
    };
    let tombstone = tx
        .query_row(
            &format!(
                "UPDATE messages SET content = 'null', state = ?3
                 WHERE conversation_id = ?1 AND seq = ?2 RETURNING {MESSAGE_COLUMNS}"
            ),
            params![conversation, seq, state.as_str()],
            read_message,
        )
        .map_err(map_sqlite)?;
    tx.commit().map_err(map_sqlite)?;
    Ok(Some(tombstone))
}

/// Hides a message from `user`; false when it was hidden already.
pub(super) fn hide(
    conn: &mut Connection,
    user: UserId,
    conversation: ConversationId,
    seq: i64,
) -> Result<bool> {
    let tx = conn.transaction().map_err(map_sqlite)?;
    if !member_exists(&tx, conversation, user).map_err(map_sqlite)? {
        return Err(rules::not_a_member());
    }
    let last_seq: i64 = tx
        .query_row(
            "SELECT last_seq FROM conversations WHERE id = ?1",
            [conversation],
            |row| row.get(0),
        )
        .map_err(map_sqlite)?;
    if seq < 1 || seq > last_seq {
        return Err(rules::no_such_message());
    }
    let inserted = tx
        .execute(
            "INSERT OR IGNORE INTO hidden_messages (user_id, conversation_id, seq, hidden_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![user, conversation, seq, now_millis()],
        )
        .map_err(map_sqlite)?;
    tx.commit().map_err(map_sqlite)?;
    Ok(inserted > 0)
}

/// The seqs `user` hid in `from..=to`, ascending.
pub(super) fn hidden_seqs(
    conn: &Connection,
    user: UserId,
    conversation: ConversationId,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<i64>> {
    conn.prepare_cached(
        "SELECT seq FROM hidden_messages WHERE user_id = ?1 AND conversation_id = ?2
         AND seq BETWEEN ?3 AND ?4 ORDER BY seq",
    )?
    .query_map(params![user, conversation, from, to], |row| row.get(0))?
    .collect()
}

//! Row mapping and small queries shared by the SQLite store's reads and writes.

use rusqlite::{params, Connection, OptionalExtension, Row};
use sha2::{Digest, Sha256};

use super::{map_sqlite, read_message, MESSAGE_COLUMNS};
use crate::error::{Error, Result};
use crate::model::*;

pub(super) fn display_name_for_openid(openid: &str) -> String {
    let digest = Sha256::digest(openid.as_bytes());
    format!("wx_{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2])
}

pub(super) fn conversation_row(row: &Row) -> rusqlite::Result<(Conversation, Option<(i64, i64)>)> {
    let kind: String = row.get(1)?;
    let visibility: Option<String> = row.get(3)?;
    let last_seq: i64 = row.get(5)?;
    let read_seq: i64 = row.get(6)?;
    let lo: Option<i64> = row.get(7)?;
    let hi: Option<i64> = row.get(8)?;
    Ok((
        Conversation {
            id: row.get(0)?,
            kind: if kind == "direct" {
                ConversationKind::Direct
            } else {
                ConversationKind::Room
            },
            name: row.get(2)?,
            visibility: visibility.map(|v| {
                if v == "invite" {
                    Visibility::Invite
                } else {
                    Visibility::Public
                }
            }),
            owner_id: row.get(4)?,
            peer: None,
            last_seq,
            read_seq,
            unread: (last_seq - read_seq).max(0),
            last_message: None,
        },
        lo.zip(hi),
    ))
}

pub(super) const CONVERSATION_SELECT: &str =
    "SELECT c.id, c.kind, c.name, c.visibility, c.owner_id, c.last_seq, m.read_seq,
        c.direct_lo, c.direct_hi
    FROM members m JOIN conversations c ON c.id = m.conversation_id";

/// Fills in the peer of a direct conversation and the last message.
pub(super) fn complete_conversation(
    conn: &Connection,
    user: UserId,
    (mut conversation, pair): (Conversation, Option<(i64, i64)>),
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
    }
    Ok(conversation)
}

pub(super) fn load_user(conn: &Connection, id: UserId) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached("SELECT id, display_name FROM users WHERE id = ?1")?
        .query_row([id], |row| {
            Ok(User {
                id: row.get(0)?,
                display_name: row.get(1)?,
            })
        })
        .optional()
}

/// Room facts needed to authorise membership changes.
pub(super) struct RoomInfo {
    pub kind: String,
    pub visibility: Option<String>,
    pub owner_id: Option<i64>,
}

pub(super) fn room_info(conn: &Connection, conversation: ConversationId) -> Result<RoomInfo> {
    conn.prepare_cached("SELECT kind, visibility, owner_id FROM conversations WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([conversation], |row| {
                Ok(RoomInfo {
                    kind: row.get(0)?,
                    visibility: row.get(1)?,
                    owner_id: row.get(2)?,
                })
            })
            .optional()
        })
        .map_err(map_sqlite)?
        .ok_or(Error::NotFound("no such conversation"))
}

pub(super) fn member_exists(
    conn: &Connection,
    conversation: ConversationId,
    user: UserId,
) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM members WHERE conversation_id = ?1 AND user_id = ?2")
        .and_then(|mut stmt| stmt.exists(params![conversation, user]))
        .map_err(map_sqlite)
}

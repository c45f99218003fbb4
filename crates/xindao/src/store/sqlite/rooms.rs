//! Room and membership writes of the SQLite store, each one transaction on the writer connection.

use rusqlite::{params, Connection, OptionalExtension};

use super::map_sqlite;
use super::rows::{load_user, member_exists, room_info};
use crate::error::{Error, Result};
use crate::model::*;

/// Creates a room owned by `owner`.
pub(super) fn create_room(
    conn: &mut Connection,
    owner: UserId,
    name: &str,
    visibility: Visibility,
) -> Result<ConversationId> {
    let now = now_millis();
    let visibility = match visibility {
        Visibility::Public => "public",
        Visibility::Invite => "invite",
    };
    let tx = conn.transaction().map_err(map_sqlite)?;
    tx.execute(
        "INSERT INTO conversations (kind, name, visibility, owner_id, last_ts, created_at)
             VALUES ('room', ?1, ?2, ?3, ?4, ?4)",
        params![name, visibility, owner, now],
    )
    .map_err(map_sqlite)?;
    let id = tx.last_insert_rowid();
    tx.execute(
            "INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES (?1, ?2, 'owner', ?3)",
            params![id, owner, now],
        )
        .map_err(map_sqlite)?;
    tx.commit().map_err(map_sqlite)?;
    Ok(id)
}

/// Adds `user` to a room: self-join (`by` = None) for public rooms, or added by a member (the owner
/// for invite-only rooms). Returns false when the user already was a member.
pub(super) fn join_room(
    conn: &mut Connection,
    conversation: ConversationId,
    user: UserId,
    by: Option<UserId>,
) -> Result<bool> {
    let tx = conn.transaction().map_err(map_sqlite)?;
    let room = room_info(&tx, conversation)?;
    if room.kind != "room" {
        return Err(Error::Forbidden(
            "direct conversations have exactly two members",
        ));
    }
    let invite_only = room.visibility.as_deref() == Some("invite");
    match by {
        None if invite_only => return Err(Error::Forbidden("this room is invite-only")),
        None => {}
        Some(adder) => {
            if !member_exists(&tx, conversation, adder)? {
                return Err(Error::Forbidden("you are not a member of this room"));
            }
            if invite_only && room.owner_id != Some(adder) {
                return Err(Error::Forbidden(
                    "only the owner adds members to an invite-only room",
                ));
            }
            if load_user(&tx, user).map_err(map_sqlite)?.is_none() {
                return Err(Error::NotFound("no such user"));
            }
        }
    }
    let added = tx
        .execute(
            "INSERT OR IGNORE INTO members (conversation_id, user_id, role, joined_at)
                 VALUES (?1, ?2, 'member', ?3)",
            params![conversation, user, now_millis()],
        )
        .map_err(map_sqlite)?;
    tx.commit().map_err(map_sqlite)?;
    Ok(added > 0)
}

/// Removes `user` from a room (`by` = None: they leave; else the owner removes them). Ownership passes
/// to the longest-standing member when the owner leaves.
pub(super) fn leave_room(
    conn: &mut Connection,
    conversation: ConversationId,
    user: UserId,
    by: Option<UserId>,
) -> Result<bool> {
    let tx = conn.transaction().map_err(map_sqlite)?;
    let room = room_info(&tx, conversation)?;
    if room.kind != "room" {
        return Err(Error::Forbidden("you cannot leave a direct conversation"));
    }
    if let Some(remover) = by {
        if room.owner_id != Some(remover) {
            return Err(Error::Forbidden("only the owner removes members"));
        }
        if remover == user {
            return Err(Error::Conflict("the owner leaves with room_leave"));
        }
    }
    let removed = tx
        .execute(
            "DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2",
            params![conversation, user],
        )
        .map_err(map_sqlite)?;
    if removed > 0 && room.owner_id == Some(user) {
        // Ownership passes to the longest-standing member; an empty room keeps no owner.
        let heir: Option<i64> = tx
                .query_row(
                    "SELECT user_id FROM members WHERE conversation_id = ?1 ORDER BY joined_at, user_id LIMIT 1",
                    [conversation],
                    |row| row.get(0),
                )
                .optional()
                .map_err(map_sqlite)?;
        tx.execute(
            "UPDATE conversations SET owner_id = ?2 WHERE id = ?1",
            params![conversation, heir],
        )
        .map_err(map_sqlite)?;
        if let Some(heir) = heir {
            tx.execute(
                "UPDATE members SET role = 'owner' WHERE conversation_id = ?1 AND user_id = ?2",
                params![conversation, heir],
            )
            .map_err(map_sqlite)?;
        }
    }
    tx.commit().map_err(map_sqlite)?;
    Ok(removed > 0)
}

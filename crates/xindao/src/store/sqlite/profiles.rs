//! Profiles, people search and contacts in the SQLite store: the statements, run by the store on its writer
//! (profile changes) or reader connections.

use std::collections::BTreeSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::map_sqlite;
use super::rows::{load_user, read_user};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::rows::USER_COLUMNS;

/// The upper end of a prefix range: every string that starts with the prefix sorts below it (nothing a
/// display name may hold sorts above U+10FFFF).
pub(crate) fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// Applies a profile change in one statement; the user after it.
pub(super) fn set_profile(conn: &Connection, user: UserId, change: &ProfileChange) -> Result<User> {
    let (set_avatar, avatar) = match &change.avatar_url {
        Some(url) => (true, url.clone()),
        None => (false, None),
    };
    conn.prepare_cached(&format!(
        "UPDATE users SET display_name = COALESCE(?2, display_name),
            avatar_url = CASE WHEN ?3 THEN ?4 ELSE avatar_url END
         WHERE id = ?1 RETURNING {USER_COLUMNS}"
    ))
    .and_then(|mut stmt| {
        stmt.query_row(
            params![user, change.display_name, set_avatar, avatar],
            read_user,
        )
        .optional()
    })
    .map_err(map_sqlite)?
    .ok_or(Error::NotFound("no such user"))
}

/// Users whose name starts with `prefix` (ASCII case-insensitive): a range of `users_by_name_nocase`.
pub(super) fn by_prefix(
    conn: &Connection,
    prefix: &str,
    limit: usize,
) -> rusqlite::Result<Vec<User>> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users
         WHERE display_name >= ?1 COLLATE NOCASE AND display_name < ?2 COLLATE NOCASE
         ORDER BY display_name COLLATE NOCASE, id LIMIT ?3"
    ))?
    .query_map(params![prefix, prefix_end(prefix), limit as i64], read_user)?
    .collect()
}

/// The users sharing a conversation with `user`, ascending by id above `after`, at most `limit`: per
/// conversation of `user`, one seek into the members' primary key reading at most `limit` ids (fewer once
/// `limit` are found: only ids below the largest kept can still count).
pub(super) fn contacts(
    conn: &Connection,
    user: UserId,
    after: UserId,
    limit: usize,
) -> rusqlite::Result<Vec<User>> {
    let conversations: Vec<ConversationId> = conn
        .prepare_cached("SELECT conversation_id FROM members WHERE user_id = ?1")?
        .query_map([user], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut members = conn.prepare_cached(
        "SELECT user_id FROM members WHERE conversation_id = ?1 AND user_id > ?2 AND user_id < ?3
         ORDER BY user_id LIMIT ?4",
    )?;
    let mut found = BTreeSet::new();
    for conversation in conversations {
        let below = match found.last() {
            Some(&largest) if found.len() >= limit => largest,
            _ => i64::MAX,
        };
        let ids = members.query_map(
            params![conversation, after, below, limit as i64 + 1],
            |row| row.get::<_, i64>(0),
        )?;
        for id in ids {
            let id = id?;
            if id != user {
                found.insert(id);
            }
        }
        while found.len() > limit {
            found.pop_last();
        }
    }
    let mut users = Vec::with_capacity(found.len());
    for id in found {
        if let Some(found) = load_user(conn, id)? {
            users.push(found);
        }
    }
    Ok(users)
}

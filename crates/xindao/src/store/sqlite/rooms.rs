//! Conversation and membership writes of the SQLite store, each one transaction on the writer connection
//! (SQLite's only writer, so the facts a rule reads cannot change before the write commits).

use rusqlite::{params, Connection, OptionalExtension};

use super::map_sqlite;
use super::rows::{load_user, member_exists, room_facts};
use crate::error::{Error, Result};
use crate::model::*;
use crate::rules::{self, Caps, Joiner, Newcomer};
use crate::store::rows::{self as shared, visibility_name};

/// The direct conversation of the pair `lo < hi`, if it exists.
pub(super) fn find_direct(
    conn: &Connection,
    lo: UserId,
    hi: UserId,
) -> rusqlite::Result<Option<ConversationId>> {
    conn.prepare_cached("SELECT id FROM conversations WHERE direct_lo = ?1 AND direct_hi = ?2")?
        .query_row(params![lo, hi], |row| row.get(0))
        .optional()
}

/// How many conversations `user` is in.
fn memberships(conn: &Connection, user: UserId) -> Result<u64> {
    conn.prepare_cached("SELECT COUNT(*) FROM members WHERE user_id = ?1")
        .and_then(|mut stmt| stmt.query_row([user], |row| row.get::<_, i64>(0)))
        .map(|count| count.max(0) as u64)
        .map_err(map_sqlite)
}

/// Whether `user` may be in one more conversation ([`rules::may_gain_membership`]).
fn check_membership_cap(conn: &Connection, user: UserId, caps: &Caps, who: Newcomer) -> Result<()> {
    rules::may_gain_membership(memberships(conn, user)?, caps, who)
}

/// Creates the direct conversation of `user` and `peer` unless it exists; true when created.
pub(super) fn open_direct(
    conn: &mut Connection,
    user: UserId,
    peer: UserId,
    caps: &Caps,
) -> Result<(ConversationId, bool)> {
    let (lo, hi) = (user.min(peer), user.max(peer));
    if load_user(conn, peer).map_err(map_sqlite)?.is_none() {
        return Err(Error::NotFound("no such user"));
    }
    let tx = conn.transaction().map_err(map_sqlite)?;
    if let Some(id) = find_direct(&tx, lo, hi).map_err(map_sqlite)? {
        return Ok((id, false));
    }
    check_membership_cap(&tx, user, caps, Newcomer::Caller)?;
    check_membership_cap(&tx, peer, caps, Newcomer::Other)?;
    let now = now_millis();
    tx.execute(
        "INSERT INTO conversations (kind, direct_lo, direct_hi, last_ts, created_at)
         VALUES ('direct', ?1, ?2, ?3, ?3)",
        params![lo, hi, now],
    )
    .map_err(map_sqlite)?;
    let id = tx.last_insert_rowid();
    for member in [lo, hi] {
        tx.execute(
            "INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES (?1, ?2, 'member', ?3)",
            params![id, member, now],
        )
        .map_err(map_sqlite)?;
    }
    tx.commit().map_err(map_sqlite)?;
    Ok((id, true))
}

/// Creates a room owned by `owner`.
pub(super) fn create_room(
    conn: &mut Connection,
    owner: UserId,
    name: &str,
    visibility: Visibility,
    caps: &Caps,
) -> Result<ConversationId> {
    let now = now_millis();
    let tx = conn.transaction().map_err(map_sqlite)?;
    let owned: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM conversations WHERE owner_id = ?1 AND kind = 'room'")
        .and_then(|mut stmt| stmt.query_row([owner], |row| row.get(0)))
        .map_err(map_sqlite)?;
    rules::may_create_room(owned.max(0) as u64, caps)?;
    check_membership_cap(&tx, owner, caps, Newcomer::Caller)?;
    tx.execute(
        "INSERT INTO conversations (kind, name, visibility, owner_id, last_ts, created_at)
         VALUES ('room', ?1, ?2, ?3, ?4, ?4)",
        params![name, visibility_name(visibility), owner, now],
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

/// Adds `user` to a room if [`rules::may_join`] allows it. Returns false when they already were a member.
pub(super) fn join_room(
    conn: &mut Connection,
    conversation: ConversationId,
    user: UserId,
    by: Option<UserId>,
    caps: &Caps,
) -> Result<bool> {
    let tx = conn.transaction().map_err(map_sqlite)?;
    let room = room_facts(&tx, conversation)?;
    let joiner = match by {
        None => Joiner::Themselves,
        Some(adder) => Joiner::AddedBy {
            adder,
            adder_is_member: member_exists(&tx, conversation, adder).map_err(map_sqlite)?,
            user_exists: load_user(&tx, user).map_err(map_sqlite)?.is_some(),
        },
    };
    rules::may_join(&room, joiner)?;
    if member_exists(&tx, conversation, user).map_err(map_sqlite)? {
        return Ok(false);
    }
    let who = if by.is_some_and(|adder| adder != user) {
        Newcomer::Other
    } else {
        Newcomer::Caller
    };
    check_membership_cap(&tx, user, caps, who)?;
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

/// Removes `user` from a room if [`rules::may_leave`] allows it, passing ownership on as
/// [`rules::ownership_passes`] says. Returns false when they were not a member.
pub(super) fn leave_room(
    conn: &mut Connection,
    conversation: ConversationId,
    user: UserId,
    by: Option<UserId>,
) -> Result<bool> {
    let tx = conn.transaction().map_err(map_sqlite)?;
    let room = room_facts(&tx, conversation)?;
    rules::may_leave(&room, user, by)?;
    let removed = tx
        .execute(
            "DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2",
            params![conversation, user],
        )
        .map_err(map_sqlite)?
        > 0;
    if rules::ownership_passes(&room, user, removed) {
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
    Ok(removed)
}

/// A page of the members of a conversation, longest-standing first.
pub(super) fn members(
    conn: &Connection,
    conversation: ConversationId,
    cursor: Option<MemberCursor>,
    limit: usize,
) -> rusqlite::Result<Vec<Member>> {
    let (ts, id) = shared::member_bound(cursor);
    conn.prepare_cached(&shared::members_page_sql("?1", "?2", "?3", "?4"))?
        .query_map(params![conversation, ts, id, limit as i64], |row| {
            shared::member(row)
        })?
        .collect()
}

pub(super) fn member_count(
    conn: &Connection,
    conversation: ConversationId,
) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM members WHERE conversation_id = ?1")?
        .query_row([conversation], |row| row.get(0))
}

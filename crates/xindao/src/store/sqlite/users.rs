//! Users and sessions in the SQLite store: the statements, run by the store on its reader or writer
//! connections.

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::read_user;
use super::{map_sqlite, SqliteStore};
use crate::error::Result;
use crate::model::*;
use crate::rules::{self, SessionTouch};
use crate::store::rows::display_name_for_openid;
use crate::store::{ExternalId, LoginIdentity, SessionExpiry, SessionInfo};

impl SqliteStore {
    /// The session of `token_hash`, its expiry slid forward when [`rules::touch_session`] says so.
    pub(super) async fn touch(
        &self,
        token_hash: [u8; 32],
        now: Millis,
        ttl_ms: i64,
    ) -> Result<Option<SessionInfo>> {
        let found = self
            .read_quick(move |conn| session(conn, &token_hash))
            .await?;
        let Some((user_id, extended_at, expires_at)) = found else {
            return Ok(None);
        };
        let expires_at = match rules::touch_session(extended_at, expires_at, now, ttl_ms) {
            SessionTouch::Expired => return Ok(None),
            SessionTouch::Valid { expires_at } => expires_at,
            SessionTouch::Extend { expires_at } => {
                self.write(move |conn| {
                    extend_session(conn, &token_hash, now, expires_at).map_err(map_sqlite)
                })
                .await?;
                expires_at
            }
        };
        Ok(Some(SessionInfo {
            user_id,
            expires_at,
            expiry: SessionExpiry::of(extended_at, expires_at),
        }))
    }
}

/// Finds the user for a login identity, creating it on first login.
pub(super) fn upsert(conn: &Connection, identity: &LoginIdentity) -> rusqlite::Result<User> {
    let now = now_millis();
    match &identity.external_id {
        ExternalId::WeChat { openid } => conn.query_row(
            "INSERT INTO users (openid, unionid, display_name, created_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (openid) DO UPDATE SET session_key = NULL,
                unionid = COALESCE(excluded.unionid, users.unionid)
             RETURNING id, display_name, avatar_url",
            params![
                openid,
                identity.unionid,
                display_name_for_openid(openid),
                now
            ],
            read_user,
        ),
        ExternalId::Dev { display_name } => conn.query_row(
            "INSERT INTO users (dev_name, display_name, created_at) VALUES (?1, ?1, ?2)
             ON CONFLICT (dev_name) DO UPDATE SET dev_name = excluded.dev_name
             RETURNING id, display_name, avatar_url",
            params![display_name, now],
            read_user,
        ),
        ExternalId::Business {
            id,
            display_name,
            default_name,
        } => conn.query_row(
            "INSERT INTO users (external_id, display_name, created_at)
             VALUES (?1, COALESCE(?2, ?3), ?4)
             ON CONFLICT (external_id) DO UPDATE
                SET display_name = COALESCE(?2, users.display_name)
             RETURNING id, display_name, avatar_url",
            params![id, display_name, default_name, now],
            read_user,
        ),
    }
}

/// Users whose display name is exactly `name` (at most `limit`).
pub(super) fn named(conn: &Connection, name: &str, limit: usize) -> rusqlite::Result<Vec<User>> {
    conn.prepare_cached(
        "SELECT id, display_name, avatar_url FROM users WHERE display_name = ?1 ORDER BY id LIMIT ?2",
    )?
    .query_map(params![name, limit as i64], read_user)?
    .collect()
}

pub(super) fn create_session(
    conn: &Connection,
    token_hash: &[u8; 32],
    user_id: UserId,
    expires_at: Millis,
    expiry: SessionExpiry,
) -> Result<()> {
    let now = now_millis();
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, created_at, extended_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            &token_hash[..],
            user_id,
            now,
            expiry.extended_at(now, expires_at),
            expires_at
        ],
    )
    .map(|_| ())
    .map_err(map_sqlite)
}

/// A session's `(user_id, extended_at, expires_at)`.
pub(super) fn session(
    conn: &Connection,
    token_hash: &[u8; 32],
) -> rusqlite::Result<Option<(UserId, Millis, Millis)>> {
    conn.prepare_cached(
        // A banned user's sessions do not authenticate (server API ban).
        "SELECT s.user_id, s.extended_at, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ?1 AND u.banned_at IS NULL",
    )?
    .query_row([&token_hash[..]], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })
    .optional()
}

pub(super) fn extend_session(
    conn: &Connection,
    token_hash: &[u8; 32],
    now: Millis,
    expires_at: Millis,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE sessions SET extended_at = ?2, expires_at = ?3 WHERE token_hash = ?1",
        params![&token_hash[..], now, expires_at],
    )
    .map(|_| ())
}

pub(super) fn revoke_session(conn: &Connection, token_hash: &[u8; 32]) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM sessions WHERE token_hash = ?1",
        [&token_hash[..]],
    )
    .map(|_| ())
}

pub(super) fn create_ticket(
    conn: &Connection,
    ticket_hash: &[u8; 32],
    token_hash: &[u8; 32],
    expires_at: Millis,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO connect_tickets (token_hash, ticket_hash, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (token_hash) DO UPDATE SET ticket_hash = excluded.ticket_hash,
            expires_at = excluded.expires_at",
        params![&token_hash[..], &ticket_hash[..], expires_at],
    )
    .map(|_| ())
}

/// Deletes a ticket; its session's token hash if it had not expired at `now`.
pub(super) fn take_ticket(
    conn: &Connection,
    ticket_hash: &[u8; 32],
    now: Millis,
) -> rusqlite::Result<Option<[u8; 32]>> {
    let taken: Option<(Vec<u8>, Millis)> = conn
        .query_row(
            "DELETE FROM connect_tickets WHERE ticket_hash = ?1 RETURNING token_hash, expires_at",
            [&ticket_hash[..]],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    Ok(taken
        .filter(|(_, expires_at)| *expires_at > now)
        .and_then(|(token_hash, _)| token_hash.try_into().ok()))
}

/// Deletes up to `limit` expired sessions and up to `limit` expired tickets.
pub(super) fn delete_expired(
    conn: &Connection,
    now: Millis,
    limit: usize,
) -> rusqlite::Result<usize> {
    let sessions = conn.execute(
        "DELETE FROM sessions WHERE token_hash IN
            (SELECT token_hash FROM sessions WHERE expires_at <= ?1 LIMIT ?2)",
        params![now, limit as i64],
    )?;
    let tickets = conn.execute(
        "DELETE FROM connect_tickets WHERE token_hash IN
            (SELECT token_hash FROM connect_tickets WHERE expires_at <= ?1 LIMIT ?2)",
        params![now, limit as i64],
    )?;
    Ok(sessions + tickets)
}

//! Users and sessions in the PostgreSQL store: one statement each, on a pooled connection.

use super::rows::{self, map_pg};
use super::PostgresStore;
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::rows::display_name_for_openid;
use crate::store::{ExternalId, LoginIdentity, SessionExpiry};

/// Finds the user for a login identity, creating it on first login.
pub(super) async fn upsert(store: &PostgresStore, identity: LoginIdentity) -> Result<User> {
    let now = now_millis();
    let row = match &identity.external_id {
        ExternalId::WeChat { openid } => {
            store
                .query_opt(
                    "INSERT INTO users (openid, unionid, display_name, created_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (openid) DO UPDATE SET session_key = NULL,
                        unionid = COALESCE(excluded.unionid, users.unionid)
                     RETURNING id, display_name, avatar_url",
                    &[
                        openid,
                        &identity.unionid,
                        &display_name_for_openid(openid),
                        &now,
                    ],
                )
                .await?
        }
        ExternalId::Dev { display_name } => {
            store
                .query_opt(
                    "INSERT INTO users (dev_name, display_name, created_at) VALUES ($1, $1, $2)
                     ON CONFLICT (dev_name) DO UPDATE SET dev_name = excluded.dev_name
                     RETURNING id, display_name, avatar_url",
                    &[display_name, &now],
                )
                .await?
        }
        ExternalId::Business {
            id,
            display_name,
            default_name,
        } => {
            store
                .query_opt(
                    "INSERT INTO users (external_id, display_name, created_at)
                     VALUES ($1, COALESCE($2, $3), $4)
                     ON CONFLICT (external_id) DO UPDATE
                        SET display_name = COALESCE($2, users.display_name)
                     RETURNING id, display_name, avatar_url",
                    &[id, display_name, default_name, &now],
                )
                .await?
        }
    };
    let row = row.ok_or_else(|| Error::Internal("upsert returned no row".into()))?;
    rows::user(&row).map_err(map_pg)
}

pub(super) async fn by_id(store: &PostgresStore, id: UserId) -> Result<Option<User>> {
    let row = store
        .query_opt(
            "SELECT id, display_name, avatar_url FROM users WHERE id = $1",
            &[&id],
        )
        .await?;
    row.as_ref().map(rows::user).transpose().map_err(map_pg)
}

/// Users whose display name is exactly `name` (at most `limit`).
pub(super) async fn named(store: &PostgresStore, name: &str, limit: usize) -> Result<Vec<User>> {
    let found = store
        .query(
            "SELECT id, display_name, avatar_url FROM users WHERE display_name = $1 ORDER BY id LIMIT $2",
            &[&name, &(limit as i64)],
        )
        .await?;
    rows::all(&found, rows::user)
}

pub(super) async fn create_session(
    store: &PostgresStore,
    token_hash: &[u8; 32],
    user_id: UserId,
    expires_at: Millis,
    expiry: SessionExpiry,
) -> Result<()> {
    let now = now_millis();
    store
        .query(
            "INSERT INTO sessions (token_hash, user_id, created_at, extended_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &&token_hash[..],
                &user_id,
                &now,
                &expiry.extended_at(now, expires_at),
                &expires_at,
            ],
        )
        .await
        .map(|_| ())
}

/// A session's `(user_id, extended_at, expires_at)`.
pub(super) async fn session(
    store: &PostgresStore,
    token_hash: &[u8; 32],
) -> Result<Option<(UserId, Millis, Millis)>> {
    let Some(row) = store
        .query_opt(
            // A banned user's sessions do not authenticate (server API ban).
            "SELECT s.user_id, s.extended_at, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND u.banned_at IS NULL",
            &[&&token_hash[..]],
        )
        .await?
    else {
        return Ok(None);
    };
    let read = || Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
    read().map(Some).map_err(map_pg)
}

pub(super) async fn extend_session(
    store: &PostgresStore,
    token_hash: &[u8; 32],
    now: Millis,
    expires_at: Millis,
) -> Result<()> {
    store
        .query(
            "UPDATE sessions SET extended_at = $2, expires_at = $3 WHERE token_hash = $1",
            &[&&token_hash[..], &now, &expires_at],
        )
        .await
        .map(|_| ())
}

pub(super) async fn revoke_session(store: &PostgresStore, token_hash: &[u8; 32]) -> Result<()> {
    store
        .query(
            "DELETE FROM sessions WHERE token_hash = $1",
            &[&&token_hash[..]],
        )
        .await
        .map(|_| ())
}

pub(super) async fn create_ticket(
    store: &PostgresStore,
    ticket_hash: &[u8; 32],
    token_hash: &[u8; 32],
    expires_at: Millis,
) -> Result<()> {
    store
        .query(
            "INSERT INTO connect_tickets (token_hash, ticket_hash, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (token_hash) DO UPDATE SET ticket_hash = excluded.ticket_hash,
                expires_at = excluded.expires_at",
            &[&&token_hash[..], &&ticket_hash[..], &expires_at],
        )
        .await
        .map(|_| ())
}

/// Deletes a ticket; its session's token hash if it had not expired at `now`.
pub(super) async fn take_ticket(
    store: &PostgresStore,
    ticket_hash: &[u8; 32],
    now: Millis,
) -> Result<Option<[u8; 32]>> {
    let Some(row) = store
        .query_opt(
            "DELETE FROM connect_tickets WHERE ticket_hash = $1 RETURNING token_hash, expires_at",
            &[&&ticket_hash[..]],
        )
        .await?
    else {
        return Ok(None);
    };
    let token_hash: Vec<u8> = row.try_get(0).map_err(map_pg)?;
    let expires_at: Millis = row.try_get(1).map_err(map_pg)?;
    Ok((expires_at > now)
        .then(|| token_hash.try_into().ok())
        .flatten())
}

/// Deletes up to `limit` expired sessions and up to `limit` expired tickets.
pub(super) async fn delete_expired(
    store: &PostgresStore,
    now: Millis,
    limit: usize,
) -> Result<usize> {
    let mut deleted = 0;
    for table in ["sessions", "connect_tickets"] {
        let rows = store
            .query(
                &format!(
                    "DELETE FROM {table} WHERE token_hash IN
                        (SELECT token_hash FROM {table} WHERE expires_at <= $1 LIMIT $2)
                     RETURNING 1"
                ),
                &[&now, &(limit as i64)],
            )
            .await?;
        deleted += rows.len();
    }
    Ok(deleted)
}

//! The server API's statements on SQLite ([`ServerApiStore`]): API keys, managed users, bans, mutes, the
//! system account, room renames and archiving. Writes take the one writer connection, like every other write.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{map_sqlite, SqliteStore};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::server_api::{
    custom_from_stored, ApiKey, RoomState, ServerApiStore, UserChange, UserRecord, SYSTEM_ACCOUNT,
};

const KEY_COLUMNS: &str = "id, name, scopes, created_at, revoked_at";
const USER_COLUMNS: &str =
    "id, display_name, external_id, custom, banned_at, system_name, created_at, avatar_url";

fn read_key(row: &Row) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: row.get(0)?,
        name: row.get(1)?,
        scopes: row.get(2)?,
        created_at: row.get(3)?,
        revoked_at: row.get(4)?,
    })
}

fn read_record(row: &Row) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get(0)?,
        display_name: row.get(1)?,
        external_id: row.get(2)?,
        custom: custom_from_stored(row.get(3)?),
        banned: row.get::<_, Option<i64>>(4)?.is_some(),
        system: row.get::<_, Option<String>>(5)?.is_some(),
        created_at: row.get(6)?,
        avatar_url: row.get(7)?,
    })
}

/// A unique key violated (a taken name or external id) is the caller's `conflict`; anything else maps as
/// usual.
fn conflict_or(error: rusqlite::Error, what: &'static str) -> Error {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => Error::Conflict(what),
        _ => map_sqlite(error),
    }
}

fn record(conn: &Connection, id: UserId) -> rusqlite::Result<Option<UserRecord>> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], read_record)
        .optional()
}

fn room_state(
    conn: &Connection,
    conversation: ConversationId,
) -> rusqlite::Result<Option<RoomState>> {
    conn.query_row(
        "SELECT owner_id, archived_at FROM conversations WHERE id = ?1 AND kind = 'room'",
        [conversation],
        |row| {
            Ok(RoomState {
                owner_id: row.get(0)?,
                archived: row.get::<_, Option<i64>>(1)?.is_some(),
            })
        },
    )
    .optional()
}

/// A live (not archived) room, or `NotFound`.
fn live_room(conn: &Connection, conversation: ConversationId) -> Result<()> {
    match room_state(conn, conversation).map_err(map_sqlite)? {
        Some(state) if !state.archived => Ok(()),
        _ => Err(Error::NotFound("no such room")),
    }
}

#[async_trait]
impl ServerApiStore for SqliteStore {
    async fn create_api_key(&self, name: &str, key_hash: [u8; 32], scopes: &str) -> Result<ApiKey> {
        let (name, scopes) = (name.to_string(), scopes.to_string());
        self.write(move |conn| {
            conn.query_row(
                &format!(
                    "INSERT INTO api_keys (name, key_hash, scopes, created_at) VALUES (?1, ?2, ?3, ?4)
                     RETURNING {KEY_COLUMNS}"
                ),
                params![name, &key_hash[..], scopes, now_millis()],
                read_key,
            )
            .map_err(|e| conflict_or(e, "an API key of this name exists"))
        })
        .await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read(|conn| {
            conn.prepare(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"))?
                .query_map([], read_key)?
                .collect()
        })
        .await
    }

    async fn revoke_api_key(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, now_millis()],
            )
            .map(|changed| changed == 1)
            .map_err(map_sqlite)
        })
        .await
    }

    async fn api_key_by_hash(&self, key_hash: [u8; 32]) -> Result<Option<ApiKey>> {
        self.read_quick(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"
            ))?
            .query_row([&key_hash[..]], read_key)
            .optional()
        })
        .await
    }

    async fn create_user(&self, change: UserChange) -> Result<UserRecord> {
        let name = change
            .display_name
            .ok_or_else(|| Error::InvalidArgs("display_name is required".into()))?;
        self.write(move |conn| {
            conn.query_row(
                &format!(
                    "INSERT INTO users (display_name, external_id, custom, created_at)
                     VALUES (?1, ?2, ?3, ?4) RETURNING {USER_COLUMNS}"
                ),
                params![name, change.external_id, change.custom, now_millis()],
                read_record,
            )
            .map_err(|e| conflict_or(e, "a user with this external_id exists"))
        })
        .await
    }

    async fn update_user(&self, id: UserId, change: UserChange) -> Result<Option<UserRecord>> {
        self.write(move |conn| {
            conn.query_row(
                &format!(
                    "UPDATE users SET display_name = COALESCE(?2, display_name),
                        external_id = COALESCE(?3, external_id), custom = COALESCE(?4, custom)
                     WHERE id = ?1 RETURNING {USER_COLUMNS}"
                ),
                params![id, change.display_name, change.external_id, change.custom],
                read_record,
            )
            .optional()
            .map_err(|e| conflict_or(e, "a user with this external_id exists"))
        })
        .await
    }

    async fn user_record(&self, id: UserId) -> Result<Option<UserRecord>> {
        self.read_quick(move |conn| record(conn, id)).await
    }

    async fn user_by_external_id(&self, external_id: &str) -> Result<Option<UserRecord>> {
        let external_id = external_id.to_string();
        self.read_quick(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE external_id = ?1"
            ))?
            .query_row([external_id], read_record)
            .optional()
        })
        .await
    }

    async fn set_banned(&self, id: UserId, banned: bool) -> Result<Option<UserRecord>> {
        self.write(move |conn| {
            conn.query_row(
                &format!(
                    "UPDATE users SET banned_at = CASE WHEN ?2 THEN COALESCE(banned_at, ?3) END
                     WHERE id = ?1 RETURNING {USER_COLUMNS}"
                ),
                params![id, banned, now_millis()],
                read_record,
            )
            .optional()
            .map_err(map_sqlite)
        })
        .await
    }

    async fn is_banned(&self, id: UserId) -> Result<bool> {
        self.read_quick(move |conn| {
            conn.prepare_cached("SELECT banned_at IS NOT NULL FROM users WHERE id = ?1")?
                .query_row([id], |row| row.get(0))
                .optional()
                .map(|banned| banned.unwrap_or(false))
        })
        .await
    }

    async fn set_muted(
        &self,
        conversation: ConversationId,
        user: UserId,
        until: Option<Millis>,
    ) -> Result<bool> {
        self.write(move |conn| {
            conn.execute(
                "UPDATE members SET muted_until = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
                params![conversation, user, until],
            )
            .map(|changed| changed == 1)
            .map_err(map_sqlite)
        })
        .await
    }

    async fn system_user(&self, display_name: &str) -> Result<User> {
        let name = display_name.to_string();
        self.write(move |conn| {
            conn.query_row(
                "INSERT INTO users (system_name, display_name, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (system_name) DO UPDATE SET system_name = excluded.system_name
                 RETURNING id, display_name",
                params![SYSTEM_ACCOUNT, name, now_millis()],
                |row| {
                    Ok(User {
                        id: row.get(0)?,
                        display_name: row.get(1)?,
                        avatar_url: None,
                    })
                },
            )
            .map_err(map_sqlite)
        })
        .await
    }

    async fn open_system_direct(
        &self,
        system: UserId,
        user: UserId,
    ) -> Result<(ConversationId, bool)> {
        crate::rules::may_open_direct(system, user)?;
        let (lo, hi) = (system.min(user), system.max(user));
        self.write(move |conn| {
            let tx = conn.transaction().map_err(map_sqlite)?;
            if let Some(id) = super::rooms::find_direct(&tx, lo, hi).map_err(map_sqlite)? {
                return Ok((id, false));
            }
            if record(&tx, user).map_err(map_sqlite)?.is_none() {
                return Err(Error::NotFound("no such user"));
            }
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
                    "INSERT INTO members (conversation_id, user_id, role, joined_at)
                     VALUES (?1, ?2, 'member', ?3)",
                    params![id, member, now],
                )
                .map_err(map_sqlite)?;
            }
            tx.commit().map_err(map_sqlite)?;
            Ok((id, true))
        })
        .await
    }

    async fn rename_room(&self, conversation: ConversationId, name: &str) -> Result<()> {
        let name = name.to_string();
        self.write(move |conn| {
            live_room(conn, conversation)?;
            conn.execute(
                "UPDATE conversations SET name = ?2 WHERE id = ?1",
                params![conversation, name],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn archive_room(&self, conversation: ConversationId) -> Result<Vec<UserId>> {
        self.write(move |conn| {
            let tx = conn.transaction().map_err(map_sqlite)?;
            live_room(&tx, conversation)?;
            let members = tx
                .prepare("DELETE FROM members WHERE conversation_id = ?1 RETURNING user_id")
                .and_then(|mut statement| {
                    statement
                        .query_map([conversation], |row| row.get(0))?
                        .collect::<rusqlite::Result<Vec<UserId>>>()
                })
                .map_err(map_sqlite)?;
            tx.execute(
                "UPDATE conversations SET archived_at = ?2, owner_id = NULL, visibility = 'invite'
                 WHERE id = ?1",
                params![conversation, now_millis()],
            )
            .map_err(map_sqlite)?;
            tx.commit().map_err(map_sqlite)?;
            Ok(members)
        })
        .await
    }

    async fn room_state(&self, conversation: ConversationId) -> Result<Option<RoomState>> {
        self.read_quick(move |conn| room_state(conn, conversation))
            .await
    }

    async fn conversation_exists(&self, conversation: ConversationId) -> Result<bool> {
        self.read_quick(move |conn| super::reads::conversation_exists(conn, conversation))
            .await
    }
}

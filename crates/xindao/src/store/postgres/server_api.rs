//! The server API's statements on PostgreSQL ([`ServerApiStore`]): the same semantics as the SQLite ones,
//! one statement each on a pooled connection, or one transaction where a change spans rows.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{map_pg, PostgresStore};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::server_api::{
    custom_from_stored, ApiKey, RoomState, ServerApiStore, UserChange, UserRecord, SYSTEM_ACCOUNT,
};

type Pg<T> = std::result::Result<T, tokio_postgres::Error>;

const KEY_COLUMNS: &str = "id, name, scopes, created_at, revoked_at";
const USER_COLUMNS: &str =
    "id, display_name, external_id, custom, banned_at, system_name, created_at, avatar_url";

fn read_key(row: &Row) -> Pg<ApiKey> {
    Ok(ApiKey {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        scopes: row.try_get(2)?,
        created_at: row.try_get(3)?,
        revoked_at: row.try_get(4)?,
    })
}

fn read_record(row: &Row) -> Pg<UserRecord> {
    Ok(UserRecord {
        id: row.try_get(0)?,
        display_name: row.try_get(1)?,
        external_id: row.try_get(2)?,
        custom: custom_from_stored(row.try_get(3)?),
        banned: row.try_get::<_, Option<i64>>(4)?.is_some(),
        system: row.try_get::<_, Option<String>>(5)?.is_some(),
        created_at: row.try_get(6)?,
        avatar_url: row.try_get(7)?,
    })
}

/// A unique key violated (an external id taken by a concurrent change) is the caller's `conflict`.
fn conflict_or(error: Error, what: &'static str) -> Error {
    match &error {
        Error::Internal(detail) if detail.contains("duplicate key") => Error::Conflict(what),
        _ => error,
    }
}

fn one_record(rows: Vec<Row>) -> Result<Option<UserRecord>> {
    rows.first().map(read_record).transpose().map_err(map_pg)
}

fn room_state_of(row: &Row) -> Pg<RoomState> {
    Ok(RoomState {
        owner_id: row.try_get(0)?,
        archived: row.try_get::<_, Option<i64>>(1)?.is_some(),
    })
}

const ROOM_STATE: &str =
    "SELECT owner_id, archived_at FROM conversations WHERE id = $1 AND kind = 'room'";

#[async_trait]
impl ServerApiStore for PostgresStore {
    async fn create_api_key(&self, name: &str, key_hash: [u8; 32], scopes: &str) -> Result<ApiKey> {
        let rows = self
            .query(
                &format!(
                    "INSERT INTO api_keys (name, key_hash, scopes, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING RETURNING {KEY_COLUMNS}"
                ),
                &[&name, &&key_hash[..], &scopes, &now_millis()],
            )
            .await?;
        let row = rows
            .first()
            .ok_or(Error::Conflict("an API key of this name exists"))?;
        read_key(row).map_err(map_pg)
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        let rows = self
            .query(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"),
                &[],
            )
            .await?;
        rows.iter().map(read_key).collect::<Pg<_>>().map_err(map_pg)
    }

    async fn revoke_api_key(&self, name: &str) -> Result<bool> {
        let rows = self
            .query(
                "UPDATE api_keys SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL RETURNING 1",
                &[&name, &now_millis()],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn api_key_by_hash(&self, key_hash: [u8; 32]) -> Result<Option<ApiKey>> {
        let row = self
            .query_opt(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"),
                &[&&key_hash[..]],
            )
            .await?;
        row.as_ref().map(read_key).transpose().map_err(map_pg)
    }

    async fn create_user(&self, change: UserChange) -> Result<UserRecord> {
        let name = change
            .display_name
            .ok_or_else(|| Error::InvalidArgs("display_name is required".into()))?;
        let rows = self
            .query(
                &format!(
                    "INSERT INTO users (display_name, external_id, custom, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING {USER_COLUMNS}"
                ),
                &[&name, &change.external_id, &change.custom, &now_millis()],
            )
            .await?;
        one_record(rows)?.ok_or(Error::Conflict("a user with this external_id exists"))
    }

    async fn update_user(&self, id: UserId, change: UserChange) -> Result<Option<UserRecord>> {
        if let Some(external_id) = &change.external_id {
            if let Some(holder) = self.user_by_external_id(external_id).await? {
                if holder.id != id {
                    return Err(Error::Conflict("a user with this external_id exists"));
                }
            }
        }
        let rows = self
            .query(
                &format!(
                    "UPDATE users SET display_name = COALESCE($2, display_name),
                        external_id = COALESCE($3, external_id), custom = COALESCE($4, custom)
                     WHERE id = $1 RETURNING {USER_COLUMNS}"
                ),
                &[
                    &id,
                    &change.display_name,
                    &change.external_id,
                    &change.custom,
                ],
            )
            .await
            .map_err(|e| conflict_or(e, "a user with this external_id exists"))?;
        one_record(rows)
    }

    async fn user_record(&self, id: UserId) -> Result<Option<UserRecord>> {
        let rows = self
            .query(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                &[&id],
            )
            .await?;
        one_record(rows)
    }

    async fn user_by_external_id(&self, external_id: &str) -> Result<Option<UserRecord>> {
        let rows = self
            .query(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE external_id = $1"),
                &[&external_id],
            )
            .await?;
        one_record(rows)
    }

    async fn set_banned(&self, id: UserId, banned: bool) -> Result<Option<UserRecord>> {
        let rows = self
            .query(
                &format!(
                    "UPDATE users SET banned_at = CASE WHEN $2 THEN COALESCE(banned_at, $3) END
                     WHERE id = $1 RETURNING {USER_COLUMNS}"
                ),
                &[&id, &banned, &now_millis()],
            )
            .await?;
        one_record(rows)
    }

    async fn is_banned(&self, id: UserId) -> Result<bool> {
        let row = self
            .query_opt(
                "SELECT banned_at IS NOT NULL FROM users WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(row.is_some_and(|row| row.get(0)))
    }

    async fn set_muted(
        &self,
        conversation: ConversationId,
        user: UserId,
        until: Option<Millis>,
    ) -> Result<bool> {
        let rows = self
            .query(
                "UPDATE members SET muted_until = $3 WHERE conversation_id = $1 AND user_id = $2
                 RETURNING 1",
                &[&conversation, &user, &until],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn system_user(&self, display_name: &str) -> Result<User> {
        let row = self
            .query_opt(
                "INSERT INTO users (system_name, display_name, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (system_name) DO UPDATE SET system_name = excluded.system_name
                 RETURNING id, display_name, avatar_url",
                &[&SYSTEM_ACCOUNT, &display_name, &now_millis()],
            )
            .await?
            .ok_or_else(|| Error::Internal("upsert returned no row".into()))?;
        super::rows::user(&row).map_err(map_pg)
    }

    async fn open_system_direct(
        &self,
        system: UserId,
        user: UserId,
    ) -> Result<(ConversationId, bool)> {
        crate::rules::may_open_direct(system, user)?;
        let (lo, hi) = (system.min(user), system.max(user));
        const FIND: &str = "SELECT id FROM conversations WHERE direct_lo = $1 AND direct_hi = $2";
        if let Some(row) = self.query_opt(FIND, &[&lo, &hi]).await? {
            return Ok((row.get(0), false));
        }
        if self.user_record(user).await?.is_none() {
            return Err(Error::NotFound("no such user"));
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let now = now_millis();
        let created = tx
            .query_opt(
                "INSERT INTO conversations (kind, direct_lo, direct_hi, last_ts, created_at)
                 VALUES ('direct', $1, $2, $3, $3) ON CONFLICT (direct_lo, direct_hi) DO NOTHING
                 RETURNING id",
                &[&lo, &hi, &now],
            )
            .await
            .map_err(map_pg)?;
        let Some(row) = created else {
            // Another node created it first (the insert waited for its commit).
            drop(tx);
            let row = self.query_opt(FIND, &[&lo, &hi]).await?;
            return row
                .map(|row| (row.get(0), false))
                .ok_or_else(|| Error::Internal("direct conversation vanished".into()));
        };
        let id: i64 = row.get(0);
        for member in [lo, hi] {
            tx.execute(
                "INSERT INTO members (conversation_id, user_id, role, joined_at)
                 VALUES ($1, $2, 'member', $3)",
                &[&id, &member, &now],
            )
            .await
            .map_err(map_pg)?;
        }
        tx.commit().await.map_err(map_pg)?;
        Ok((id, true))
    }

    async fn rename_room(&self, conversation: ConversationId, name: &str) -> Result<()> {
        let rows = self
            .query(
                "UPDATE conversations SET name = $2
                 WHERE id = $1 AND kind = 'room' AND archived_at IS NULL RETURNING 1",
                &[&conversation, &name],
            )
            .await?;
        match rows.is_empty() {
            true => Err(Error::NotFound("no such room")),
            false => Ok(()),
        }
    }

    async fn archive_room(&self, conversation: ConversationId) -> Result<Vec<UserId>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        // The room's row lock orders this after (or before) any membership change of the room.
        let state = tx
            .query_opt(&format!("{ROOM_STATE} FOR UPDATE"), &[&conversation])
            .await
            .map_err(map_pg)?;
        match state
            .as_ref()
            .map(room_state_of)
            .transpose()
            .map_err(map_pg)?
        {
            Some(state) if !state.archived => {}
            _ => return Err(Error::NotFound("no such room")),
        }
        let removed = tx
            .query(
                "DELETE FROM members WHERE conversation_id = $1 RETURNING user_id",
                &[&conversation],
            )
            .await
            .map_err(map_pg)?;
        tx.execute(
            "UPDATE conversations SET archived_at = $2, owner_id = NULL, visibility = 'invite'
             WHERE id = $1",
            &[&conversation, &now_millis()],
        )
        .await
        .map_err(map_pg)?;
        tx.commit().await.map_err(map_pg)?;
        Ok(removed.iter().map(|row| row.get(0)).collect())
    }

    async fn room_state(&self, conversation: ConversationId) -> Result<Option<RoomState>> {
        let row = self.query_opt(ROOM_STATE, &[&conversation]).await?;
        row.as_ref().map(room_state_of).transpose().map_err(map_pg)
    }

    async fn conversation_exists(&self, conversation: ConversationId) -> Result<bool> {
        let row = self
            .query_opt(
                "SELECT 1 FROM conversations WHERE id = $1",
                &[&conversation],
            )
            .await?;
        Ok(row.is_some())
    }
}

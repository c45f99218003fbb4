//! Profiles, people search and contacts in the PostgreSQL store: one statement each, on a pooled connection.

use super::rows::{self, map_pg};
use super::PostgresStore;
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::rows::USER_COLUMNS;

/// Applies a profile change in one statement; the user after it.
pub(super) async fn set_profile(
    store: &PostgresStore,
    user: UserId,
    change: ProfileChange,
) -> Result<User> {
    let (set_avatar, avatar) = match change.avatar_url {
        Some(url) => (true, url),
        None => (false, None),
    };
    let row = store
        .query_opt(
            &format!(
                "UPDATE users SET display_name = COALESCE($2, display_name),
                    avatar_url = CASE WHEN $3 THEN $4 ELSE avatar_url END
                 WHERE id = $1 RETURNING {USER_COLUMNS}"
            ),
            &[&user, &change.display_name, &set_avatar, &avatar],
        )
        .await?
        .ok_or(Error::NotFound("no such user"))?;
    rows::user(&row).map_err(map_pg)
}

/// Users whose lower-cased name starts with the lower-cased `prefix`: a byte-wise range of
/// `users_by_name_prefix` (`text_pattern_ops`), whatever the database's collation.
pub(super) async fn by_prefix(
    store: &PostgresStore,
    prefix: &str,
    limit: usize,
) -> Result<Vec<User>> {
    let found = store
        .query(
            &format!(
                "SELECT {USER_COLUMNS} FROM users
                 WHERE lower(display_name) ~>=~ lower($1)
                   AND lower(display_name) ~<~ (lower($1) || chr(1114111))
                 ORDER BY lower(display_name) USING ~<~, id LIMIT $2"
            ),
            &[&prefix, &(limit as i64)],
        )
        .await?;
    rows::all(&found, rows::user)
}

/// The users sharing a conversation with `user`, ascending by id above `after`, at most `limit`: per
/// conversation of `user` (a LATERAL), one seek into the members' primary key reading at most `limit` ids.
pub(super) async fn contacts(
    store: &PostgresStore,
    user: UserId,
    after: UserId,
    limit: usize,
) -> Result<Vec<User>> {
    let found = store
        .query(
            "SELECT u.id, u.display_name, u.avatar_url FROM users u WHERE u.id IN (
                SELECT DISTINCT t.user_id FROM members mine CROSS JOIN LATERAL (
                    SELECT user_id FROM members WHERE conversation_id = mine.conversation_id
                        AND user_id > $2 AND user_id <> $1
                    ORDER BY user_id LIMIT $3) t
                WHERE mine.user_id = $1 ORDER BY t.user_id LIMIT $3)
             ORDER BY u.id",
            &[&user, &after, &(limit as i64)],
        )
        .await?;
    rows::all(&found, rows::user)
}

//! Conversation and membership writes on PostgreSQL. Each runs in one transaction; concurrent nodes
//! creating the same direct conversation or changing one room's owner serialise on unique keys and row locks.

use super::{map_pg, PostgresStore};
use crate::error::{Error, Result};
use crate::model::*;
use crate::rules::{self, Caps, Joiner, Newcomer, RoomFacts};
use crate::store::rows::{room_facts, visibility_name, ROOM_FACTS};

/// Locks `user`'s row until the transaction ends (so that no other membership of theirs is added meanwhile, on
/// any node) and checks that they may be in one more conversation ([`rules::may_gain_membership`]). Users are
/// locked in ascending id order where a transaction locks two.
async fn check_membership_cap(
    tx: &deadpool_postgres::Transaction<'_>,
    user: UserId,
    caps: &Caps,
    who: Newcomer,
) -> Result<()> {
    tx.query_opt("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user])
        .await
        .map_err(map_pg)?;
    let count: i64 = tx
        .query_one("SELECT COUNT(*) FROM members WHERE user_id = $1", &[&user])
        .await
        .map_err(map_pg)?
        .get(0);
    rules::may_gain_membership(count.max(0) as u64, caps, who)
}

pub(super) async fn open_direct(
    store: &PostgresStore,
    user: UserId,
    peer: UserId,
) -> Result<(ConversationId, bool)> {
    let caps = store.caps;
    rules::may_open_direct(user, peer)?;
    let (lo, hi) = (user.min(peer), user.max(peer));
    // Sending with `to_user` opens the conversation on every send: answer that with one read.
    const FIND: &str = "SELECT id FROM conversations WHERE direct_lo = $1 AND direct_hi = $2";
    if let Some(row) = store.query_opt(FIND, &[&lo, &hi]).await? {
        return Ok((row.get(0), false));
    }
    if store
        .query_opt("SELECT 1 FROM users WHERE id = $1", &[&peer])
        .await?
        .is_none()
    {
        return Err(Error::NotFound("no such user"));
    }
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(map_pg)?;
    for member in [lo, hi] {
        let who = if member == user {
            Newcomer::Caller
        } else {
            Newcomer::Other
        };
        check_membership_cap(&tx, member, &caps, who).await?;
    }
    let now = now_millis();
    let created = tx
        .query_opt(
            "INSERT INTO conversations (kind, direct_lo, direct_hi, last_ts, created_at)
             VALUES ('direct', $1, $2, $3, $3) ON CONFLICT (direct_lo, direct_hi) DO NOTHING RETURNING id",
            &[&lo, &hi, &now],
        )
        .await
        .map_err(map_pg)?;
    let Some(row) = created else {
        // Another node created it first (the insert waited for its commit).
        drop(tx);
        let row = store.query_opt(FIND, &[&lo, &hi]).await?;
        return row
            .map(|row| (row.get(0), false))
            .ok_or_else(|| Error::Internal("direct conversation vanished".into()));
    };
    let id: i64 = row.get(0);
    for member in [lo, hi] {
        tx.execute(
            "INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES ($1, $2, 'member', $3)",
            &[&id, &member, &now],
        )
        .await
        .map_err(map_pg)?;
    }
    tx.commit().await.map_err(map_pg)?;
    Ok((id, true))
}

pub(super) async fn create_room(
    store: &PostgresStore,
    owner: UserId,
    name: &str,
    visibility: Visibility,
) -> Result<ConversationId> {
    let visibility = visibility_name(visibility);
    let now = now_millis();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(map_pg)?;
    check_membership_cap(&tx, owner, &store.caps, Newcomer::Caller).await?;
    let owned: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM conversations WHERE owner_id = $1 AND kind = 'room'",
            &[&owner],
        )
        .await
        .map_err(map_pg)?
        .get(0);
    rules::may_create_room(owned.max(0) as u64, &store.caps)?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO conversations (kind, name, visibility, owner_id, last_ts, created_at)
             VALUES ('room', $1, $2, $3, $4, $4) RETURNING id",
            &[&name, &visibility, &owner, &now],
        )
        .await
        .map_err(map_pg)?
        .get(0);
    tx.execute(
        "INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES ($1, $2, 'owner', $3)",
        &[&id, &owner, &now],
    )
    .await
    .map_err(map_pg)?;
    tx.commit().await.map_err(map_pg)?;
    Ok(id)
}

/// What the room rules decide on, read under the room's row lock (held until the transaction ends, so no
/// other node changes the room's owner or visibility before this change commits).
async fn lock_room(
    tx: &deadpool_postgres::Transaction<'_>,
    conversation: ConversationId,
) -> Result<RoomFacts> {
    let sql = format!("SELECT {ROOM_FACTS} FROM conversations WHERE id = $1 FOR UPDATE");
    tx.query_opt(&sql, &[&conversation])
        .await
        .map_err(map_pg)?
        .map(|row| room_facts(&row).map_err(map_pg))
        .transpose()?
        .ok_or_else(rules::no_such_conversation)
}

async fn exists(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<bool> {
    Ok(tx.query_opt(sql, params).await.map_err(map_pg)?.is_some())
}

pub(super) async fn join_room(
    store: &PostgresStore,
    conversation: ConversationId,
    user: UserId,
    by: Option<UserId>,
) -> Result<bool> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(map_pg)?;
    let room = lock_room(&tx, conversation).await?;
    let joiner = match by {
        None => Joiner::Themselves,
        Some(adder) => Joiner::AddedBy {
            adder,
            adder_is_member: exists(
                &tx,
                "SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2",
                &[&conversation, &adder],
            )
            .await?,
            user_exists: exists(&tx, "SELECT 1 FROM users WHERE id = $1", &[&user]).await?,
        },
    };
    rules::may_join(&room, joiner)?;
    let already = exists(
        &tx,
        "SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2",
        &[&conversation, &user],
    )
    .await?;
    if already {
        return Ok(false);
    }
    let who = if by.is_some_and(|adder| adder != user) {
        Newcomer::Other
    } else {
        Newcomer::Caller
    };
    check_membership_cap(&tx, user, &store.caps, who).await?;
    let added = tx
        .execute(
            "INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES ($1, $2, 'member', $3)
             ON CONFLICT DO NOTHING",
            &[&conversation, &user, &now_millis()],
        )
        .await
        .map_err(map_pg)?;
    tx.commit().await.map_err(map_pg)?;
    Ok(added > 0)
}

pub(super) async fn leave_room(
    store: &PostgresStore,
    conversation: ConversationId,
    user: UserId,
    by: Option<UserId>,
) -> Result<bool> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(map_pg)?;
    let room = lock_room(&tx, conversation).await?;
    rules::may_leave(&room, user, by)?;
    let removed = tx
        .execute(
            "DELETE FROM members WHERE conversation_id = $1 AND user_id = $2",
            &[&conversation, &user],
        )
        .await
        .map_err(map_pg)?
        > 0;
    if rules::ownership_passes(&room, user, removed) {
        let heir: Option<i64> = tx
            .query_opt(
                "SELECT user_id FROM members WHERE conversation_id = $1 ORDER BY joined_at, user_id LIMIT 1",
                &[&conversation],
            )
            .await
            .map_err(map_pg)?
            .map(|row| row.get(0));
        tx.execute(
            "UPDATE conversations SET owner_id = $2 WHERE id = $1",
            &[&conversation, &heir],
        )
        .await
        .map_err(map_pg)?;
        if let Some(heir) = heir {
            tx.execute(
                "UPDATE members SET role = 'owner' WHERE conversation_id = $1 AND user_id = $2",
                &[&conversation, &heir],
            )
            .await
            .map_err(map_pg)?;
        }
    }
    tx.commit().await.map_err(map_pg)?;
    Ok(removed)
}

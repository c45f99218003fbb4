//! Recall, remove and hide on PostgreSQL, each one transaction. The room's row is read `FOR KEY SHARE`: it
//! waits for a membership or ownership change of the room in progress (those lock it `FOR UPDATE`) and makes
//! them wait, but not the appends (which only update its `last_seq`); the message's row is locked `FOR UPDATE`,
//! so two changes of one message take turns.

use super::rows::{self, map_pg};
use super::PostgresStore;
use crate::error::Result;
use crate::model::*;
use crate::rules::{self, MessageFacts, StateChange};
use crate::store::rows::{room_facts, MESSAGE_COLUMNS, ROOM_FACTS};

/// Writes the tombstone if [`rules::may_change_message`] allows it; `None` when it already was one.
pub(super) async fn set_state(
    store: &PostgresStore,
    conversation: ConversationId,
    seq: i64,
    change: StateChange,
) -> Result<Option<Message>> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(map_pg)?;
    let sql = format!("SELECT {ROOM_FACTS} FROM conversations WHERE id = $1 FOR KEY SHARE");
    let room = tx
        .query_opt(&sql, &[&conversation])
        .await
        .map_err(map_pg)?
        .map(|row| room_facts(&row).map_err(map_pg))
        .transpose()?;
    let member = match change.by() {
        Some(by) => tx
            .query_opt(
                "SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2",
                &[&conversation, &by],
            )
            .await
            .map_err(map_pg)?
            .is_some(),
        None => false,
    };
    let facts = tx
        .query_opt(
            "SELECT sender_id, created_at, state FROM messages
             WHERE conversation_id = $1 AND seq = $2 FOR UPDATE",
            &[&conversation, &seq],
        )
        .await
        .map_err(map_pg)?
        .map(|row| {
            let state: Option<String> = row.try_get(2)?;
            Ok(MessageFacts {
                sender_id: row.try_get(0)?,
                ts: row.try_get(1)?,
                state: state.as_deref().and_then(MessageState::from_stored),
            })
        })
        .transpose()
        .map_err(map_pg)?;
    let Some(state) = rules::may_change_message(room.as_ref(), member, facts.as_ref(), change)?
    else {
        return Ok(None);
    };
    let row = tx
        .query_one(
            &format!(
                "UPDATE messages SET content = 'null', state = $3
                 WHERE conversation_id = $1 AND seq = $2 RETURNING {MESSAGE_COLUMNS}"
            ),
            &[&conversation, &seq, &state.as_str()],
        )
        .await
        .map_err(map_pg)?;
    let tombstone = rows::message(&row).map_err(map_pg)?;
    tx.commit().await.map_err(map_pg)?;
    Ok(Some(tombstone))
}

/// Hides a message from `user`; false when it was hidden already.
pub(super) async fn hide(
    store: &PostgresStore,
    user: UserId,
    conversation: ConversationId,
    seq: i64,
) -> Result<bool> {
    // One statement: the membership and the seq are read by the insert that depends on them.
    let found = store
        .query(
            "WITH facts AS (
                SELECT c.last_seq FROM conversations c JOIN members m ON m.conversation_id = c.id
                WHERE c.id = $2 AND m.user_id = $1),
             added AS (
                INSERT INTO hidden_messages (user_id, conversation_id, seq, hidden_at)
                SELECT $1::bigint, $2::bigint, $3::bigint, $4::bigint FROM facts
                WHERE $3::bigint BETWEEN 1 AND facts.last_seq
                ON CONFLICT DO NOTHING RETURNING 1)
             SELECT (SELECT last_seq FROM facts), (SELECT COUNT(*) FROM added)",
            &[&user, &conversation, &seq, &now_millis()],
        )
        .await?;
    let row = found
        .first()
        .ok_or_else(|| crate::error::Error::Internal("hide returned no row".into()))?;
    let last_seq: Option<i64> = row.try_get(0).map_err(map_pg)?;
    let added: i64 = row.try_get(1).map_err(map_pg)?;
    match last_seq {
        None => Err(rules::not_a_member()),
        Some(last) if seq < 1 || seq > last => Err(rules::no_such_message()),
        Some(_) => Ok(added > 0),
    }
}

/// The seqs `user` hid in `from..=to`, ascending.
pub(super) async fn hidden_seqs(
    store: &PostgresStore,
    user: UserId,
    conversation: ConversationId,
    from: i64,
    to: i64,
) -> Result<Vec<i64>> {
    let found = store
        .query(
            "SELECT seq FROM hidden_messages WHERE user_id = $1 AND conversation_id = $2
             AND seq BETWEEN $3 AND $4 ORDER BY seq",
            &[&user, &conversation, &from, &to],
        )
        .await?;
    rows::all(&found, |row| row.try_get(0))
}

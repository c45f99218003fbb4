//! Membership lists, conversation lists, history pages and read markers in the PostgreSQL store: one
//! statement each, on a pooled connection.

use super::rows::{self, map_pg};
use super::PostgresStore;
use crate::error::Result;
use crate::model::*;
use crate::rules;
use crate::store::rows::{
    activity_bound, activity_filter, history_filter, history_page, member, member_bound,
    members_page_sql, public_room, MESSAGE_COLUMNS,
};

/// A page of the members of a conversation, longest-standing first.
pub(super) async fn members(
    store: &PostgresStore,
    conversation: ConversationId,
    cursor: Option<MemberCursor>,
    limit: usize,
) -> Result<Vec<Member>> {
    let (ts, id) = member_bound(cursor);
    let found = store
        .query(
            &members_page_sql("$1", "$2", "$3", "$4"),
            &[&conversation, &ts, &id, &(limit as i64)],
        )
        .await?;
    rows::all(&found, member)
}

pub(super) async fn member_count(
    store: &PostgresStore,
    conversation: ConversationId,
) -> Result<i64> {
    let found = store
        .query_opt(
            "SELECT COUNT(*) FROM members WHERE conversation_id = $1",
            &[&conversation],
        )
        .await?;
    match found {
        Some(row) => row.try_get(0).map_err(map_pg),
        None => Ok(0),
    }
}

pub(super) async fn is_member(
    store: &PostgresStore,
    conversation: ConversationId,
    user: UserId,
) -> Result<bool> {
    Ok(store
        .query_opt(
            "SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2",
            &[&conversation, &user],
        )
        .await?
        .is_some())
}

/// The conversation as `user` sees it; `Forbidden` when not a member, `NotFound` when absent.
pub(super) async fn conversation_for(
    store: &PostgresStore,
    conversation: ConversationId,
    user: UserId,
) -> Result<Conversation> {
    let sql = format!(
        "{} WHERE m.user_id = $1 AND c.id = $2",
        rows::conversation_select()
    );
    if let Some(row) = store.query_opt(&sql, &[&user, &conversation]).await? {
        return rows::conversation(&row).map_err(map_pg);
    }
    let exists = store
        .query_opt(
            "SELECT 1 FROM conversations WHERE id = $1",
            &[&conversation],
        )
        .await?
        .is_some();
    Err(rules::unseen_conversation(exists))
}

/// A page of the conversations of `user`, most recent activity first, after `cursor`.
pub(super) async fn conversations_page(
    store: &PostgresStore,
    user: UserId,
    cursor: Option<ActivityCursor>,
    limit: usize,
) -> Result<Vec<Conversation>> {
    let sql = format!(
        "{} WHERE m.user_id = $1 {} LIMIT $4",
        rows::conversation_select(),
        activity_filter("$2", "$3")
    );
    let (ts, id) = activity_bound(cursor);
    let found = store
        .query(&sql, &[&user, &ts, &id, &(limit as i64)])
        .await?;
    rows::all(&found, rows::conversation)
}

/// The id and last seq of the conversations of `user` in `(after, until]`, ascending, at most `limit`.
pub(super) async fn sync_scan(
    store: &PostgresStore,
    user: UserId,
    after: ConversationId,
    until: Option<ConversationId>,
    limit: usize,
) -> Result<Vec<(ConversationId, i64)>> {
    let found = store
        .query(
            "SELECT c.id, c.last_seq FROM members m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = $1 AND m.conversation_id > $2 AND m.conversation_id <= $3
             ORDER BY m.conversation_id LIMIT $4",
            &[&user, &after, &until.unwrap_or(i64::MAX), &(limit as i64)],
        )
        .await?;
    rows::all(&found, |row| Ok((row.try_get(0)?, row.try_get(1)?)))
}

/// Those of `others` who share a conversation with `user`.
pub(super) async fn sharing_with(
    store: &PostgresStore,
    user: UserId,
    others: &[UserId],
) -> Result<Vec<UserId>> {
    let others = others.to_vec();
    let found = store
        .query(
            "SELECT o.id FROM unnest($2::bigint[]) AS o(id) WHERE o.id = $1 OR EXISTS (
                SELECT 1 FROM members mine JOIN members theirs ON theirs.conversation_id = mine.conversation_id
                WHERE mine.user_id = $1 AND theirs.user_id = o.id)",
            &[&user, &others],
        )
        .await?;
    rows::all(&found, |row| row.try_get(0))
}

/// The user and the ids of all their conversations, in one round trip: a connect is latency the user waits for.
pub(super) async fn connection_state(
    store: &PostgresStore,
    user: UserId,
) -> Result<Option<(User, Vec<ConversationId>)>> {
    let row = store
        .query_opt(
            "SELECT u.id, u.display_name, u.avatar_url,
                    COALESCE(array_agg(m.conversation_id) FILTER (WHERE m.conversation_id IS NOT NULL), '{}')
             FROM users u LEFT JOIN members m ON m.user_id = u.id
             WHERE u.id = $1 GROUP BY u.id, u.display_name, u.avatar_url",
            &[&user],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let read = || Ok((rows::user(&row)?, row.try_get(3)?));
    read().map(Some).map_err(map_pg)
}

pub(super) async fn public_rooms(store: &PostgresStore, limit: usize) -> Result<Vec<PublicRoom>> {
    let found = store
        .query(
            "SELECT c.id, c.name, (SELECT COUNT(*) FROM members m WHERE m.conversation_id = c.id)
             FROM conversations c WHERE c.kind = 'room' AND c.visibility = 'public'
             ORDER BY c.last_ts DESC LIMIT $1",
            &[&(limit as i64)],
        )
        .await?;
    rows::all(&found, public_room)
}

/// One page of a conversation's messages, in ascending seq order.
pub(super) async fn history(
    store: &PostgresStore,
    conversation: ConversationId,
    range: Range,
    limit: usize,
) -> Result<Page> {
    let (comparison, bound, order) = history_filter(range);
    let found = store
        .query(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND seq {comparison} $2
                 ORDER BY seq {order} LIMIT $3"
            ),
            &[&conversation, &bound, &(limit as i64 + 1)],
        )
        .await?;
    Ok(history_page(
        rows::all(&found, rows::message)?,
        range,
        limit,
    ))
}

/// Moves the read marker of `user` forward to `seq` (capped at last_seq).
pub(super) async fn mark_read(
    store: &PostgresStore,
    conversation: ConversationId,
    user: UserId,
    seq: i64,
) -> Result<i64> {
    let row = store
        .query_opt(
            "UPDATE members SET read_seq = GREATEST(read_seq,
                LEAST($3, (SELECT last_seq FROM conversations WHERE id = $1)))
             WHERE conversation_id = $1 AND user_id = $2 RETURNING read_seq",
            &[&conversation, &user, &seq],
        )
        .await?
        .ok_or_else(rules::not_a_member)?;
    row.try_get(0).map_err(map_pg)
}

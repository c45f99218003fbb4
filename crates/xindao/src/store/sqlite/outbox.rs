//! The webhook outbox in SQLite: rows written in the transactions that commit their events (the batch's for
//! messages), and the worker's claim, completion, retry and dead-letter statements, on the writer connection.
//! One node owns an SQLite database, so a claim's lease only matters across a restart. Also the
//! `user.offline_message` coalescing marks, whose claims write their events here.

use rusqlite::{params, Connection};

use super::map_sqlite;
use crate::error::Result;
use crate::model::Millis;
use crate::store::offline::{Claim, OfflineCandidate, OfflineStore};
use crate::store::outbox::{DeadRow, Outbox, OutboxEvent, OutboxRow};

/// Writes `events` for the endpoints that want them, in the caller's transaction.
pub(super) fn insert(
    conn: &Connection,
    outbox: &Outbox,
    events: &[OutboxEvent],
    now: Millis,
) -> rusqlite::Result<()> {
    if !outbox.is_active() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO webhook_outbox (endpoint, ordering_key, event, data, created_at, next_at, request_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
    )?;
    for event in events {
        for endpoint in outbox.targets(event.event) {
            let request_id = event.request_id.as_deref();
            insert.execute(params![
                endpoint,
                event.key,
                event.event,
                event.data,
                now,
                request_id
            ])?;
        }
    }
    Ok(())
}

/// Claims up to `limit` deliverable heads (due, not under a live lease, the first row of their endpoint and
/// key) and, behind each, up to `run - 1` following rows of the same endpoint and key: the head's lease
/// keeps every other claimer off the whole key, so its rows can be sent one after another in order.
pub(super) fn claim(
    conn: &mut Connection,
    node: &str,
    now: Millis,
    lease_ms: i64,
    limit: usize,
    run: usize,
) -> rusqlite::Result<Vec<OutboxRow>> {
    let tx = conn.transaction()?;
    let mut claimed: Vec<OutboxRow> = tx
        .prepare_cached(
            "UPDATE webhook_outbox SET lease_until = ?2 + ?3, claimed_by = ?1
             WHERE id IN (
                SELECT o.id FROM webhook_outbox o
                JOIN (SELECT min(id) AS id FROM webhook_outbox GROUP BY endpoint, ordering_key) h
                  ON h.id = o.id
                WHERE o.next_at <= ?2 AND o.lease_until <= ?2
                ORDER BY o.id LIMIT ?4)
             RETURNING id, endpoint, ordering_key, event, data, created_at, attempts, request_id",
        )?
        .query_map(params![node, now, lease_ms, limit as i64], read_row)?
        .collect::<rusqlite::Result<_>>()?;
    let heads: Vec<(String, i64, i64)> = claimed
        .iter()
        .map(|r| (r.endpoint.clone(), r.key, r.id))
        .collect();
    if run > 1 {
        let mut follow = tx.prepare_cached(
            "UPDATE webhook_outbox SET lease_until = ?2 + ?3, claimed_by = ?1
             WHERE id IN (SELECT id FROM webhook_outbox
                          WHERE endpoint = ?4 AND ordering_key = ?5 AND id > ?6
                          ORDER BY id LIMIT ?7)
             RETURNING id, endpoint, ordering_key, event, data, created_at, attempts, request_id",
        )?;
        for (endpoint, key, head) in heads {
            let rows = follow.query_map(
                params![node, now, lease_ms, endpoint, key, head, (run - 1) as i64],
                read_row,
            )?;
            for row in rows {
                claimed.push(row?);
            }
        }
    }
    tx.commit()?;
    claimed.sort_by_key(|r| r.id);
    Ok(claimed)
}

fn read_row(row: &rusqlite::Row) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: row.get(0)?,
        endpoint: row.get(1)?,
        key: row.get(2)?,
        event: row.get(3)?,
        data: row.get(4)?,
        created_at: row.get(5)?,
        attempts: row.get(6)?,
        request_id: row.get(7)?,
    })
}

/// Gives claimed rows back unsent (behind a failed one, or a run cut short).
pub(super) fn release(conn: &mut Connection, ids: &[i64]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut release = tx.prepare_cached(
            "UPDATE webhook_outbox SET lease_until = 0, claimed_by = NULL WHERE id = ?1",
        )?;
        for id in ids {
            release.execute([id])?;
        }
    }
    tx.commit()
}

pub(super) fn done(conn: &mut Connection, ids: &[i64]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut delete = tx.prepare_cached("DELETE FROM webhook_outbox WHERE id = ?1")?;
        for id in ids {
            delete.execute([id])?;
        }
    }
    tx.commit()
}

pub(super) fn retry(
    conn: &Connection,
    id: i64,
    next_at: Millis,
    error: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE webhook_outbox SET attempts = attempts + 1, next_at = ?2, lease_until = 0,
            claimed_by = NULL, last_error = ?3 WHERE id = ?1",
    )?
    .execute(params![id, next_at, error])
    .map(|_| ())
}

/// Moves a row to the dead-letter table.
pub(super) fn bury(
    conn: &mut Connection,
    id: i64,
    error: &str,
    now: Millis,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT OR REPLACE INTO webhook_dead
            (id, endpoint, ordering_key, event, data, created_at, attempts, last_error, dead_at,
             request_id)
         SELECT id, endpoint, ordering_key, event, data, created_at, attempts + 1, ?2, ?3, request_id
         FROM webhook_outbox WHERE id = ?1",
        params![id, error, now],
    )?;
    tx.execute("DELETE FROM webhook_outbox WHERE id = ?1", [id])?;
    tx.commit()
}

/// A page of dead deliveries: ids above `after`, of `endpoint` when given (`NULL` takes every endpoint).
pub(super) fn dead(
    conn: &Connection,
    endpoint: Option<&str>,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<DeadRow>> {
    conn.prepare_cached(
        "SELECT id, endpoint, event, created_at, attempts, last_error, dead_at
         FROM webhook_dead WHERE id > ?1 AND (?2 IS NULL OR endpoint = ?2) ORDER BY id LIMIT ?3",
    )?
    .query_map(params![after, endpoint, limit as i64], |row| {
        Ok(DeadRow {
            id: row.get(0)?,
            endpoint: row.get(1)?,
            event: row.get(2)?,
            created_at: row.get(3)?,
            attempts: row.get(4)?,
            last_error: row.get(5)?,
            dead_at: row.get(6)?,
        })
    })?
    .collect()
}

/// Puts dead deliveries back in the outbox (all, or those of `ids`), with their ids (so their delivery ids
/// stay the same) and fresh attempts; returns how many.
pub(super) fn redrive(
    conn: &mut Connection,
    ids: Option<Vec<i64>>,
    now: Millis,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let ids: Vec<i64> = match ids {
        Some(ids) => ids,
        None => tx
            .prepare("SELECT id FROM webhook_dead")?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?,
    };
    let mut moved = 0;
    for id in ids {
        moved += tx.execute(
            "INSERT INTO webhook_outbox
                (id, endpoint, ordering_key, event, data, created_at, next_at, request_id)
             SELECT id, endpoint, ordering_key, event, data, ?2, ?2, request_id
             FROM webhook_dead WHERE id = ?1",
            params![id, now],
        )?;
        tx.execute("DELETE FROM webhook_dead WHERE id = ?1", [id])?;
    }
    tx.commit()?;
    Ok(moved)
}

/// Rows waiting in the outbox, and the creation time of the oldest.
pub(super) fn depth(conn: &Connection) -> rusqlite::Result<(i64, Option<Millis>)> {
    conn.query_row(
        "SELECT count(*), min(created_at) FROM webhook_outbox",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// The `user.offline_message` marks (`crate::store::offline`): on the one writer connection, each claim is
/// the conditional upsert, and the events of the claims won go to the outbox in the same transaction.
#[async_trait::async_trait]
impl OfflineStore for super::SqliteStore {
    async fn offline_enqueue(
        &self,
        candidates: Vec<OfflineCandidate>,
        now: Millis,
        window_ms: i64,
    ) -> Result<Vec<Claim>> {
        let outbox = self.outbox.clone();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(map_sqlite)?;
            let mut claims = Vec::with_capacity(candidates.len());
            let mut events = Vec::new();
            {
                let mut claim = tx
                    .prepare_cached(
                        "INSERT INTO webhook_offline_notified (user_id, conversation_id, at)
                         VALUES (?1, ?2, ?3)
                         ON CONFLICT (user_id, conversation_id) DO UPDATE SET at = excluded.at
                         WHERE webhook_offline_notified.at <= ?3 - ?4",
                    )
                    .map_err(map_sqlite)?;
                let mut held = tx
                    .prepare_cached(
                        "SELECT at FROM webhook_offline_notified
                         WHERE user_id = ?1 AND conversation_id = ?2",
                    )
                    .map_err(map_sqlite)?;
                for candidate in candidates {
                    let key = params![candidate.user, candidate.conversation];
                    let claimed = claim
                        .execute(params![
                            candidate.user,
                            candidate.conversation,
                            now,
                            window_ms
                        ])
                        .map_err(map_sqlite)?
                        == 1;
                    if claimed {
                        claims.push(Claim::Won);
                        events.push(candidate.event);
                    } else {
                        let since = held.query_row(key, |row| row.get(0)).map_err(map_sqlite)?;
                        claims.push(Claim::Held { since });
                    }
                }
            }
            insert(&tx, &outbox, &events, now).map_err(map_sqlite)?;
            tx.commit().map_err(map_sqlite)?;
            Ok(claims)
        })
        .await
    }

    async fn offline_marks_forget(
        &self,
        webhook_before: Millis,
        wechat_before: Millis,
    ) -> Result<u64> {
        self.write(move |conn| {
            let webhook = conn
                .execute(
                    "DELETE FROM webhook_offline_notified WHERE at < ?1",
                    [webhook_before],
                )
                .map_err(map_sqlite)?;
            let wechat = conn
                .execute("DELETE FROM wechat_notified WHERE at < ?1", [wechat_before])
                .map_err(map_sqlite)?;
            Ok((webhook + wechat) as u64)
        })
        .await
    }
}

//! The webhook outbox in SQLite: rows written in the transactions that commit their events (the batch's for
//! messages), and the worker's settlement (delete, release, retry, dead-letter) and claim, one transaction
//! per wake of the worker, on the writer connection.
//! One node owns an SQLite database, so a claim's lease only matters across a restart. Also the
//! `user.offline_message` coalescing marks, whose claims write their events here.

use std::collections::HashMap;

use rusqlite::{params, Connection};

use super::map_sqlite;
use crate::error::Result;
use crate::model::Millis;
use crate::store::offline::{OfflineCandidate, OfflineStore, WindowClaim};
use crate::store::outbox::{Claim, DeadRow, Outbox, OutboxEvent, OutboxRow, Settlement};

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

/// Records what the worker did with its claimed rows, then claims again (see [`Claim`]): one transaction on
/// the writer, so a wake of the worker costs one commit however many rows it settles and claims.
pub(super) fn settle_and_claim(
    conn: &mut Connection,
    settled: &Settlement,
    claim: &Claim,
) -> rusqlite::Result<Vec<OutboxRow>> {
    let tx = conn.transaction()?;
    settle(&tx, settled, claim.now)?;
    let claimed = if claim.limit > 0 {
        take(&tx, claim)?
    } else {
        Vec::new()
    };
    tx.commit()?;
    Ok(claimed)
}

fn settle(tx: &Connection, settled: &Settlement, now: Millis) -> rusqlite::Result<()> {
    let mut delete = tx.prepare_cached("DELETE FROM webhook_outbox WHERE id = ?1")?;
    for id in &settled.delivered {
        delete.execute([id])?;
    }
    let mut release = tx.prepare_cached(
        "UPDATE webhook_outbox SET lease_until = 0, claimed_by = NULL WHERE id = ?1",
    )?;
    for id in &settled.released {
        release.execute([id])?;
    }
    let mut retry = tx.prepare_cached(
        "UPDATE webhook_outbox SET attempts = attempts + 1, next_at = ?2, lease_until = 0,
            claimed_by = NULL, last_error = ?3 WHERE id = ?1",
    )?;
    for r in &settled.retried {
        retry.execute(params![r.id, r.next_at, r.error])?;
    }
    let mut bury = tx.prepare_cached(
        "INSERT OR REPLACE INTO webhook_dead
            (id, endpoint, ordering_key, event, data, created_at, attempts, last_error, dead_at,
             request_id)
         SELECT id, endpoint, ordering_key, event, data, created_at, attempts + 1, ?2, ?3, request_id
         FROM webhook_outbox WHERE id = ?1",
    )?;
    for (id, error) in &settled.buried {
        bury.execute(params![id, error, now])?;
        delete.execute([id])?;
    }
    Ok(())
}

/// Rows looked at per row claimed, at most: a key with more waiting rows than `run` is passed over, and
/// this bounds the passing over (the rows beyond are seen by later claims, as the key drains).
const SCAN_PER_CLAIMED: usize = 4;

/// The claim itself: rows in id order that are free and whose key's first row is free and due (an index
/// probe per row, stopping at `limit` taken rows), at most `run` per key, then leased.
fn take(tx: &Connection, claim: &Claim) -> rusqlite::Result<Vec<OutboxRow>> {
    let mut candidates = tx.prepare_cached(
        "SELECT o.id, o.endpoint, o.ordering_key, o.event, o.data, o.created_at, o.attempts,
                o.request_id
         FROM webhook_outbox o
         WHERE o.lease_until <= ?1
           AND (SELECT h.next_at <= ?1 AND h.lease_until <= ?1 FROM webhook_outbox h
                WHERE h.endpoint = o.endpoint AND h.ordering_key = o.ordering_key
                ORDER BY h.id LIMIT 1)
         ORDER BY o.id",
    )?;
    let mut rows = candidates.query([claim.now])?;
    let mut claimed = Vec::new();
    let mut per_key: HashMap<(String, i64), usize> = HashMap::new();
    let mut scanned = 0;
    let scan_max = claim.limit.saturating_mul(SCAN_PER_CLAIMED);
    while let Some(row) = rows.next()? {
        let row = read_row(row)?;
        scanned += 1;
        let taken = per_key.entry((row.endpoint.clone(), row.key)).or_default();
        if *taken < claim.run {
            *taken += 1;
            claimed.push(row);
        }
        if claimed.len() >= claim.limit || scanned >= scan_max {
            break;
        }
    }
    drop(rows);
    let mut lease = tx.prepare_cached(
        "UPDATE webhook_outbox SET lease_until = ?2, claimed_by = ?3 WHERE id = ?1",
    )?;
    let until = claim.now + claim.lease_ms;
    for row in &claimed {
        lease.execute(params![row.id, until, claim.node])?;
    }
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
    ) -> Result<Vec<WindowClaim>> {
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
                        claims.push(WindowClaim::Won);
                        events.push(candidate.event);
                    } else {
                        let since = held.query_row(key, |row| row.get(0)).map_err(map_sqlite)?;
                        claims.push(WindowClaim::Held { since });
                    }
                }
            }
            insert(&tx, &outbox, &events, now).map_err(map_sqlite)?;
            tx.commit().map_err(map_sqlite)?;
            outbox.committed();
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

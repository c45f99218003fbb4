//! The webhook outbox in PostgreSQL, shared by the nodes of a cluster: rows are written in the transactions
//! that commit their events, and each node claims deliverable rows with `FOR UPDATE SKIP LOCKED` and a lease,
//! so a row is sent by one node at a time, and a node that dies holding claims has them taken by another
//! once the lease runs out. Also the `user.offline_message` coalescing marks, whose claims write their
//! events here.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{map_pg, PostgresStore};
use crate::error::Result;
use crate::model::{now_millis, Millis};
use crate::store::offline::{OfflineCandidate, OfflineStore, WindowClaim};
use crate::store::outbox::{Claim, DeadRow, Outbox, OutboxEvent, OutboxRow, Settlement};

type Pg<T> = std::result::Result<T, tokio_postgres::Error>;

/// [`map_pg`], keeping PostgreSQL's own message in the error (the worker logs it).
fn pg_detail(error: tokio_postgres::Error) -> crate::Error {
    let detail = error.as_db_error().map(|db| db.message().to_string());
    match (map_pg(error), detail) {
        (crate::Error::Internal(_), Some(detail)) => crate::Error::Internal(detail),
        (other, _) => other,
    }
}

/// Writes `events` for the endpoints that want them, in the caller's transaction: one statement.
pub(super) async fn insert(
    tx: &impl GenericClient,
    outbox: &Outbox,
    events: &[OutboxEvent],
    now: Millis,
) -> Pg<()> {
    if !outbox.is_active() {
        return Ok(());
    }
    let (mut endpoints, mut keys, mut names, mut datas) = (vec![], vec![], vec![], vec![]);
    let mut request_ids: Vec<Option<&str>> = vec![];
    for event in events {
        for endpoint in outbox.targets(event.event) {
            endpoints.push(endpoint.to_string());
            keys.push(event.key);
            names.push(event.event.to_string());
            datas.push(event.data.clone());
            request_ids.push(event.request_id.as_deref());
        }
    }
    if endpoints.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(
            "INSERT INTO webhook_outbox
                (endpoint, ordering_key, event, data, created_at, next_at, request_id)
             SELECT e, k, n, d, $5, $5, r
             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $6::text[])
                AS t(e, k, n, d, r)",
        )
        .await?;
    tx.execute(
        &statement,
        &[&endpoints, &keys, &names, &datas, &now, &request_ids],
    )
    .await
    .map(|_| ())
}

fn row(row: &Row) -> Pg<OutboxRow> {
    Ok(OutboxRow {
        id: row.try_get(0)?,
        endpoint: row.try_get(1)?,
        key: row.try_get(2)?,
        event: row.try_get(3)?,
        data: row.try_get(4)?,
        created_at: row.try_get(5)?,
        attempts: row.try_get(6)?,
        request_id: row.try_get(7)?,
    })
}

impl PostgresStore {
    pub(super) async fn outbox_enqueue(&self, events: Vec<OutboxEvent>) -> Result<()> {
        if !self.outbox.is_active() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        insert(&tx, &self.outbox, &events, now_millis())
            .await
            .map_err(map_pg)?;
        tx.commit().await.map_err(map_pg)?;
        self.outbox.committed();
        Ok(())
    }

    /// Records what the worker did with its claimed rows, then claims again (see [`Claim`]), in one
    /// transaction: a wake of the worker costs one commit however many rows it settles and claims.
    pub(super) async fn outbox_settle_and_claim(
        &self,
        settled: Settlement,
        claim: Claim,
    ) -> Result<Vec<OutboxRow>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_detail)?;
        settle(&tx, &settled).await.map_err(pg_detail)?;
        let claimed = if claim.limit > 0 {
            take(&tx, &claim).await.map_err(pg_detail)?
        } else {
            Vec::new()
        };
        tx.commit().await.map_err(pg_detail)?;
        Ok(claimed)
    }

    pub(super) async fn outbox_dead(
        &self,
        endpoint: Option<String>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DeadRow>> {
        let rows = self
            .query(
                "SELECT id, endpoint, event, created_at, attempts, last_error, dead_at
                 FROM webhook_dead WHERE id > $1 AND ($2::text IS NULL OR endpoint = $2)
                 ORDER BY id LIMIT $3",
                &[&after, &endpoint, &(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadRow {
                    id: r.try_get(0)?,
                    endpoint: r.try_get(1)?,
                    event: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    attempts: r.try_get(4)?,
                    last_error: r.try_get(5)?,
                    dead_at: r.try_get(6)?,
                })
            })
            .collect::<Pg<_>>()
            .map_err(map_pg)
    }

    pub(super) async fn outbox_redrive(&self, ids: Option<Vec<i64>>) -> Result<usize> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let now = now_millis();
        let moved = tx
            .execute(
                "WITH moved AS (
                    DELETE FROM webhook_dead WHERE $1::bigint[] IS NULL OR id = ANY($1)
                    RETURNING id, endpoint, ordering_key, event, data, request_id)
                 INSERT INTO webhook_outbox
                    (id, endpoint, ordering_key, event, data, created_at, next_at, request_id)
                 SELECT id, endpoint, ordering_key, event, data, $2, $2, request_id FROM moved",
                &[&ids, &now],
            )
            .await
            .map_err(map_pg)?;
        tx.commit().await.map_err(map_pg)?;
        Ok(moved as usize)
    }

    pub(super) async fn outbox_depth(&self) -> Result<(i64, Option<Millis>)> {
        let rows = self
            .query("SELECT count(*), min(created_at) FROM webhook_outbox", &[])
            .await?;
        let first = rows.first().map(|r| (r.try_get(0), r.try_get(1)));
        match first {
            Some((Ok(count), Ok(oldest))) => Ok((count, oldest)),
            _ => Ok((0, None)),
        }
    }
}

async fn settle(tx: &impl GenericClient, settled: &Settlement) -> Pg<()> {
    if !settled.delivered.is_empty() {
        tx.execute(
            "DELETE FROM webhook_outbox WHERE id = ANY($1)",
            &[&settled.delivered],
        )
        .await?;
    }
    if !settled.released.is_empty() {
        tx.execute(
            "UPDATE webhook_outbox SET lease_until = 0, claimed_by = NULL WHERE id = ANY($1)",
            &[&settled.released],
        )
        .await?;
    }
    for r in &settled.retried {
        tx.execute(
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_at = $2, lease_until = 0,
                claimed_by = NULL, last_error = $3 WHERE id = $1",
            &[&r.id, &r.next_at, &r.error],
        )
        .await?;
    }
    for (id, error) in &settled.buried {
        tx.execute(
            "INSERT INTO webhook_dead
                (id, endpoint, ordering_key, event, data, created_at, attempts, last_error, dead_at,
                 request_id)
             SELECT id, endpoint, ordering_key, event, data, created_at, attempts + 1, $2, $3,
                 request_id
             FROM webhook_outbox WHERE id = $1
             ON CONFLICT (id) DO NOTHING",
            &[id, error, &now_millis()],
        )
        .await?;
        tx.execute("DELETE FROM webhook_outbox WHERE id = $1", &[id])
            .await?;
    }
    Ok(())
}

/// The claim: deliverable heads locked with `FOR UPDATE SKIP LOCKED` (so concurrent nodes take different
/// ones) and leased; the heads' leases keep other nodes off their keys, so the rows behind them (at most
/// `run` per key with the head, `limit` in all) are leased without a lock of their own.
async fn take(tx: &impl GenericClient, claim: &Claim) -> Pg<Vec<OutboxRow>> {
    let limit = claim.limit as i64;
    let heads = tx
        .query(
            "UPDATE webhook_outbox SET lease_until = $2::bigint + $3::bigint, claimed_by = $1
             WHERE id IN (
                SELECT o.id FROM webhook_outbox o
                WHERE o.id IN (SELECT min(id) FROM webhook_outbox GROUP BY endpoint, ordering_key)
                  AND o.next_at <= $2 AND o.lease_until <= $2
                ORDER BY o.id LIMIT $4
                FOR UPDATE SKIP LOCKED)
             RETURNING id, endpoint, ordering_key, event, data, created_at, attempts, request_id",
            &[&claim.node, &claim.now, &claim.lease_ms, &limit],
        )
        .await?;
    let mut claimed = heads.iter().map(row).collect::<Pg<Vec<_>>>()?;
    let room = limit - claimed.len() as i64;
    if claim.run > 1 && room > 0 && !claimed.is_empty() {
        let endpoints: Vec<&str> = claimed.iter().map(|r| r.endpoint.as_str()).collect();
        let keys: Vec<i64> = claimed.iter().map(|r| r.key).collect();
        let ids: Vec<i64> = claimed.iter().map(|r| r.id).collect();
        let follow = tx
            .query(
                "UPDATE webhook_outbox SET lease_until = $2::bigint + $3::bigint, claimed_by = $1
                 WHERE id IN (
                    SELECT id FROM (
                        SELECT o.id, row_number() OVER (PARTITION BY o.endpoint, o.ordering_key
                                                        ORDER BY o.id) AS rn
                        FROM webhook_outbox o
                        JOIN UNNEST($4::text[], $5::bigint[], $6::bigint[]) AS g(endpoint, k, head)
                          ON o.endpoint = g.endpoint AND o.ordering_key = g.k AND o.id > g.head
                    ) t WHERE rn < $7 ORDER BY id LIMIT $8)
                 RETURNING id, endpoint, ordering_key, event, data, created_at, attempts, request_id",
                &[
                    &claim.node,
                    &claim.now,
                    &claim.lease_ms,
                    &endpoints,
                    &keys,
                    &ids,
                    &(claim.run as i64),
                    &room,
                ],
            )
            .await?;
        for r in &follow {
            claimed.push(row(r)?);
        }
    }
    claimed.sort_by_key(|r| r.id);
    Ok(claimed)
}

/// The `user.offline_message` marks (`crate::store::offline`): one upsert claims every candidate's window (in
/// (user, conversation) order, so that two nodes claiming overlapping sets lock rows in the same order and
/// cannot deadlock), and the events of the claims won go to the outbox in the same transaction.
#[async_trait::async_trait]
impl OfflineStore for PostgresStore {
    async fn offline_enqueue(
        &self,
        candidates: Vec<OfflineCandidate>,
        now: Millis,
        window_ms: i64,
    ) -> Result<Vec<WindowClaim>> {
        let mut keys: Vec<(i64, i64)> = candidates
            .iter()
            .map(|c| (c.user, c.conversation))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let (users, conversations): (Vec<i64>, Vec<i64>) = keys.into_iter().unzip();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_detail)?;
        let claimed = tx
            .query(
                "INSERT INTO webhook_offline_notified (user_id, conversation_id, at)
                 SELECT u, c, $3 FROM UNNEST($1::bigint[], $2::bigint[]) AS t(u, c) ORDER BY u, c
                 ON CONFLICT (user_id, conversation_id) DO UPDATE SET at = excluded.at
                 WHERE webhook_offline_notified.at <= $3::bigint - $4::bigint
                 RETURNING user_id, conversation_id",
                &[&users, &conversations, &now, &window_ms],
            )
            .await
            .map_err(pg_detail)?;
        let mut claimed: HashSet<(i64, i64)> =
            claimed.iter().map(|row| (row.get(0), row.get(1))).collect();
        // When the windows held back were claimed, so that this node can remember when they end.
        let held: HashMap<(i64, i64), Millis> = tx
            .query(
                "SELECT user_id, conversation_id, at FROM webhook_offline_notified
                 WHERE (user_id, conversation_id) IN
                    (SELECT u, c FROM UNNEST($1::bigint[], $2::bigint[]) AS t(u, c))",
                &[&users, &conversations],
            )
            .await
            .map_err(pg_detail)?
            .iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2)))
            .collect();
        let mut claims = Vec::with_capacity(candidates.len());
        let mut events = Vec::new();
        for candidate in candidates {
            let key = (candidate.user, candidate.conversation);
            // A pair named twice is written once.
            if claimed.remove(&key) {
                claims.push(WindowClaim::Won);
                events.push(candidate.event);
            } else {
                let since = held.get(&key).copied().unwrap_or(now);
                claims.push(WindowClaim::Held { since });
            }
        }
        insert(&tx, &self.outbox, &events, now)
            .await
            .map_err(pg_detail)?;
        tx.commit().await.map_err(pg_detail)?;
        self.outbox.committed();
        Ok(claims)
    }

    async fn offline_marks_forget(
        &self,
        webhook_before: Millis,
        wechat_before: Millis,
    ) -> Result<u64> {
        let client = self.client().await?;
        let webhook = client
            .execute(
                "DELETE FROM webhook_offline_notified WHERE at < $1",
                &[&webhook_before],
            )
            .await
            .map_err(map_pg)?;
        let wechat = client
            .execute(
                "DELETE FROM wechat_notified WHERE at < $1",
                &[&wechat_before],
            )
            .await
            .map_err(map_pg)?;
        Ok(webhook + wechat)
    }
}

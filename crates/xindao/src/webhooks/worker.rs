//! The delivery worker: claims deliverable outbox rows through the store (a lease per row, so nodes of a
//! cluster never send the same row at once), POSTs them to their endpoint in signed batches
//! ([`super::batch`]), and then deletes them, retries the failed later (exponential backoff with jitter) or,
//! past `webhook_retry_secs`, parks them in the dead-letter list: all of it recorded with the next claim, one
//! store call per wake. A conversation's claimed rows travel in one POST, in commit order, and its next rows
//! are claimed only after that POST settled; different conversations and batches go in parallel
//! (`webhook_concurrency` POSTs).
//! It also watches the outbox's depth: at `webhook_outbox_max` new events stop being kept (an alert) until
//! it drains below 90 % of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::batch::{deliver, pack, Batch};
use super::WebhookMetrics;
use crate::config::{Config, WebhookEndpoint, DEFAULT_BATCH_MAX};
use crate::model::{now_millis, Millis};
use crate::store::{Claim, Outbox, Retry, Settlement, Store};

/// Longest wait between two attempts of one delivery.
const BACKOFF_MAX_MS: u64 = 10 * 60 * 1000;
/// Sleep of an idle worker between two claims, for events committed by other nodes (this node's commits
/// wake it, `Outbox::committed`).
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long a worker woken by a finished POST waits for others to finish with it.
const COALESCE: Duration = Duration::from_millis(2);
/// How often the outbox's depth is measured.
const DEPTH_EVERY: Duration = Duration::from_secs(1);

/// Milliseconds before attempt `attempts + 1`: doubling from `initial_ms`, capped, with 50..100 % jitter.
pub fn backoff_ms(initial_ms: u64, attempts: i64) -> u64 {
    let step = initial_ms
        .saturating_mul(1u64 << attempts.clamp(0, 30))
        .clamp(1, BACKOFF_MAX_MS);
    step / 2 + rand::rng().random_range(0..=step / 2)
}

/// Starts the worker when an endpoint is configured; it stops when `shutdown` is cancelled (claims it held
/// are taken up again after their lease).
pub fn spawn(
    store: Arc<dyn Store>,
    config: Arc<Config>,
    outbox: Arc<Outbox>,
    metrics: WebhookMetrics,
    shutdown: CancellationToken,
) -> crate::Result<Option<tokio::task::JoinHandle<()>>> {
    if config.webhooks.0.is_empty() {
        return Ok(None);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.webhook_timeout_ms))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| crate::Error::Internal(format!("webhook http client: {e}")))?;
    let node = config
        .node_id
        .clone()
        .unwrap_or_else(|| format!("node-{:016x}", rand::random::<u64>()));
    let worker = Worker {
        endpoints: config
            .webhooks
            .0
            .iter()
            .map(|e| (e.name.clone(), Arc::new(e.clone())))
            .collect(),
        store,
        config,
        outbox,
        metrics,
        http,
        node,
    };
    Ok(Some(tokio::spawn(worker.run(shutdown))))
}

struct Worker {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    outbox: Arc<Outbox>,
    metrics: WebhookMetrics,
    http: reqwest::Client,
    node: String,
    endpoints: HashMap<String, Arc<WebhookEndpoint>>,
}

/// A POST that finished: its batch, and why it failed (if it did).
struct Sent {
    batch: Batch,
    failed: Option<String>,
}

impl Worker {
    async fn run(self, shutdown: CancellationToken) {
        let mut inflight: JoinSet<Sent> = JoinSet::new();
        let mut depth_at = tokio::time::Instant::now();
        let concurrency = self.config.webhook_concurrency.max(1);
        let lease = self.config.webhook_lease_ms as i64;
        let batch_max = self
            .endpoints
            .values()
            .map(|e| e.batch_max)
            .max()
            .unwrap_or(1);
        let mut settled = Settlement::default();
        while !shutdown.is_cancelled() {
            if depth_at.elapsed() >= DEPTH_EVERY {
                depth_at = tokio::time::Instant::now();
                self.measure_depth().await;
            }
            // One store call per wake (finished POSTs, events committed on this node while idle, or the idle
            // poll): what the finished POSTs came to, and the next claim.
            let room = concurrency.saturating_sub(inflight.len());
            let claim = Claim {
                node: self.node.clone(),
                now: now_millis(),
                lease_ms: lease,
                limit: room * batch_max,
                run: batch_max,
            };
            let settling = std::mem::take(&mut settled);
            match self.store.webhook_settle_and_claim(settling, claim).await {
                Ok(rows) => {
                    let (batches, left_out) = pack(rows, |name| self.batch_max(name), room);
                    settled.released = left_out;
                    for batch in batches {
                        let endpoint = self.endpoints.get(&batch.endpoint).cloned();
                        let http = self.http.clone();
                        inflight.spawn(async move {
                            let failed = deliver(&http, endpoint.as_ref(), &batch.rows).await.err();
                            Sent { batch, failed }
                        });
                    }
                }
                // Claims not settled run out with their lease: delivered rows are then sent again.
                Err(error) => {
                    tracing::warn!(?error, "cannot settle and claim webhook deliveries")
                }
            }
            let mut finished = Vec::new();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(IDLE_POLL) => {}
                // Idle, events committed on this node: claim them now. While POSTs are out their completions
                // wake the worker, so commits under load do not add a claim (a writer transaction) each.
                () = self.outbox.events_committed(), if inflight.is_empty() => {}
                Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                    finished.extend(joined.ok());
                    // Let the POSTs finishing at about the same time settle together: one store call for
                    // all of them instead of one each.
                    tokio::time::sleep(COALESCE).await;
                }
            }
            while let Some(joined) = inflight.try_join_next() {
                finished.extend(joined.ok());
            }
            for sent in finished {
                self.settle(sent, &mut settled);
            }
        }
        // What finished before the stop is recorded; claims still out come back after their lease.
        if !settled.is_empty() {
            let claim = Claim {
                node: self.node.clone(),
                now: now_millis(),
                lease_ms: lease,
                limit: 0,
                run: 0,
            };
            if let Err(error) = self.store.webhook_settle_and_claim(settled, claim).await {
                tracing::warn!(%error, "cannot settle webhook deliveries at shutdown");
            }
        }
    }

    fn batch_max(&self, endpoint: &str) -> usize {
        self.endpoints
            .get(endpoint)
            .map_or(DEFAULT_BATCH_MAX, |e| e.batch_max)
    }

    /// Adds what a finished POST came to: its rows delivered, or, when it failed, the first row of each key
    /// retried later or dead-lettered (the rows behind it given back: nothing is skipped, order is kept).
    fn settle(&self, sent: Sent, settled: &mut Settlement) {
        let Some(error) = sent.failed else {
            let now = now_millis();
            for row in &sent.batch.rows {
                self.metrics.delivered.inc();
                let age = (now - row.created_at).max(0) as f64 / 1000.0;
                self.metrics.delivery_seconds.observe(age);
                settled.delivered.push(row.id);
            }
            return;
        };
        self.metrics.failures.inc();
        let (heads, rest) = sent.batch.heads_and_rest();
        settled.released.extend(rest);
        let now = now_millis();
        let window = self.config.webhook_retry_secs.saturating_mul(1000) as Millis;
        for row in heads {
            let delay = backoff_ms(self.config.webhook_backoff_ms, row.attempts) as Millis;
            if now + delay - row.created_at > window {
                tracing::warn!(id = row.id, endpoint = %row.endpoint, request_id = row.request_id.as_deref(), %error, "webhook delivery dead-lettered");
                self.metrics.dead.inc();
                settled.buried.push((row.id, error.clone()));
            } else {
                tracing::debug!(id = row.id, endpoint = %row.endpoint, request_id = row.request_id.as_deref(), %error, delay, "webhook delivery failed");
                settled.retried.push(Retry {
                    id: row.id,
                    next_at: now + delay,
                    error: error.clone(),
                });
            }
        }
    }

    async fn measure_depth(&self) {
        match self.store.webhook_depth().await {
            Ok((depth, oldest)) => {
                self.metrics.outbox_depth.set(depth);
                let lag = oldest.map_or(0, |t| (now_millis() - t).max(0) / 1000);
                self.metrics.lag_seconds.set(lag);
                let max = self.config.webhook_outbox_max as i64;
                if depth >= max && !self.outbox.is_full() {
                    tracing::error!(
                        depth,
                        max,
                        "webhook outbox full: new events are not kept until it drains"
                    );
                    self.outbox.set_full(true);
                } else if depth < max - max / 10 && self.outbox.is_full() {
                    tracing::warn!(depth, "webhook outbox drained: keeping events again");
                    self.outbox.set_full(false);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot measure the webhook outbox"),
        }
        self.metrics.dropped.set(self.outbox.dropped() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempts in 0..40 {
            let step = (1000u64 << attempts.min(30)).min(BACKOFF_MAX_MS);
            let d = backoff_ms(1000, attempts);
            assert!(d >= step / 2 && d <= step, "{attempts}: {d}");
        }
    }
}

//! The delivery worker: claims deliverable outbox rows through the store (a lease per row, so nodes of a
//! cluster never send the same row at once), POSTs each to its endpoint signed, and then deletes it, retries
//! it later (exponential backoff with jitter) or, past `webhook_retry_secs`, parks it in the dead-letter list.
//! A row is the first waiting one of its endpoint and conversation, so a conversation's events reach an
//! endpoint one at a time, in commit order; different conversations go in parallel (`webhook_concurrency`).
//! It also watches the outbox's depth: at `webhook_outbox_max` new events stop being kept (an alert) until
//! it drains below 90 % of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Delivery, WebhookMetrics};
use crate::config::{Config, WebhookEndpoint};
use crate::model::{now_millis, Millis};
use crate::store::{Outbox, OutboxRow, Store};

/// Longest wait between two attempts of one delivery.
const BACKOFF_MAX_MS: u64 = 10 * 60 * 1000;
/// Sleep of an idle worker between two claims.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Rows of one conversation sent per claim, one after another.
const RUN_MAX: usize = 64;
/// How long a worker woken by a finished delivery waits for others to finish with it.
const COALESCE: Duration = Duration::from_millis(2);
/// How often the outbox's depth is measured.
const DEPTH_EVERY: Duration = Duration::from_secs(1);
/// Bytes of a failing receiver's answer kept as `last_error`.
const ERROR_BYTES: usize = 200;

/// `X-Xindao-Signature` of `body` at unix time `t`: `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key size");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

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

/// How one attempt went.
enum Outcome {
    Delivered,
    Failed(String),
}

/// What a run (claimed rows of one endpoint and key, in order) came to.
struct Run {
    delivered: Vec<OutboxRow>,
    /// The first row that failed; nothing after it was tried.
    failed: Option<(OutboxRow, String)>,
    /// Rows not tried (behind a failure, or past the run's time budget).
    untouched: Vec<i64>,
}

/// Splits claimed rows (in id order) into runs of one endpoint and key each, in id order within.
fn runs(rows: Vec<OutboxRow>) -> Vec<Vec<OutboxRow>> {
    let mut by_key: HashMap<(String, i64), Vec<OutboxRow>> = HashMap::new();
    for row in rows {
        by_key
            .entry((row.endpoint.clone(), row.key))
            .or_default()
            .push(row);
    }
    by_key.into_values().collect()
}

/// Sends a run's rows one after another, stopping at the first failure or when `budget` is spent.
async fn send_run(
    http: reqwest::Client,
    endpoint: Option<Arc<WebhookEndpoint>>,
    run: Vec<OutboxRow>,
    budget: Duration,
) -> Run {
    let started = tokio::time::Instant::now();
    let mut result = Run {
        delivered: Vec::new(),
        failed: None,
        untouched: Vec::new(),
    };
    let mut rows = run.into_iter();
    for row in rows.by_ref() {
        let outcome = match &endpoint {
            Some(endpoint) => deliver(&http, endpoint, &row).await,
            None => Outcome::Failed("endpoint no longer configured".into()),
        };
        match outcome {
            Outcome::Delivered => result.delivered.push(row),
            Outcome::Failed(error) => {
                result.failed = Some((row, error));
                break;
            }
        }
        if started.elapsed() >= budget {
            break;
        }
    }
    result.untouched = rows.map(|row| row.id).collect();
    result
}

impl Worker {
    async fn run(self, shutdown: CancellationToken) {
        let mut inflight: JoinSet<Run> = JoinSet::new();
        let mut depth_at = tokio::time::Instant::now();
        let concurrency = self.config.webhook_concurrency;
        let lease = self.config.webhook_lease_ms as i64;
        // A run stops well inside its lease, so no other node can take its key while it sends.
        let run_budget = Duration::from_millis(self.config.webhook_lease_ms / 4);
        while !shutdown.is_cancelled() {
            if depth_at.elapsed() >= DEPTH_EVERY {
                depth_at = tokio::time::Instant::now();
                self.measure_depth().await;
            }
            // One claim per wake: a wake is a finished batch of runs, or the idle poll.
            let room = concurrency.saturating_sub(inflight.len());
            if room > 0 {
                match self
                    .store
                    .webhook_claim(&self.node, now_millis(), lease, room, RUN_MAX)
                    .await
                {
                    Ok(rows) => {
                        for run in runs(rows) {
                            let endpoint = self.endpoints.get(&run[0].endpoint).cloned();
                            let http = self.http.clone();
                            let store = self.store.clone();
                            inflight.spawn(async move {
                                let run = send_run(http, endpoint, run, run_budget).await;
                                // Deleted at once, well inside the lease: a row still there when its
                                // lease ends would be sent again.
                                let ids: Vec<i64> = run.delivered.iter().map(|r| r.id).collect();
                                if !ids.is_empty() {
                                    if let Err(error) = store.webhook_done(ids).await {
                                        tracing::warn!(%error, "cannot delete delivered webhooks (they will be sent again)");
                                    }
                                }
                                run
                            });
                        }
                    }
                    Err(error) => tracing::warn!(?error, "cannot claim webhook deliveries"),
                }
            }
            let mut finished = Vec::new();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(IDLE_POLL) => {}
                Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                    finished.extend(joined.ok());
                    // Let the runs finishing at about the same time settle together: one claim for all of
                    // them instead of one each (a store write).
                    tokio::time::sleep(COALESCE).await;
                }
            }
            while let Some(joined) = inflight.try_join_next() {
                finished.extend(joined.ok());
            }
            self.settle(finished).await;
        }
    }

    /// Records what finished runs did (their delivered rows are already deleted): a failed one retried or
    /// dead-lettered, the rows behind it given back.
    async fn settle(&self, finished: Vec<Run>) {
        let mut release = Vec::new();
        for run in finished {
            for row in &run.delivered {
                self.metrics.delivered.inc();
                let age = (now_millis() - row.created_at).max(0) as f64 / 1000.0;
                self.metrics.delivery_seconds.observe(age);
            }
            release.extend(run.untouched);
            if let Some((row, error)) = run.failed {
                self.failed(row, error).await;
            }
        }
        if !release.is_empty() {
            if let Err(error) = self.store.webhook_release(release).await {
                tracing::warn!(%error, "cannot give back webhook claims (freed after their lease)");
            }
        }
    }

    async fn failed(&self, row: OutboxRow, error: String) {
        self.metrics.failures.inc();
        let now = now_millis();
        let delay = backoff_ms(self.config.webhook_backoff_ms, row.attempts) as Millis;
        let window = self.config.webhook_retry_secs.saturating_mul(1000) as Millis;
        let result = if now + delay - row.created_at > window {
            tracing::warn!(id = row.id, endpoint = %row.endpoint, request_id = row.request_id.as_deref(), %error, "webhook delivery dead-lettered");
            self.metrics.dead.inc();
            self.store.webhook_bury(row.id, error).await
        } else {
            tracing::debug!(id = row.id, endpoint = %row.endpoint, request_id = row.request_id.as_deref(), %error, delay, "webhook delivery failed");
            self.store.webhook_retry(row.id, now + delay, error).await
        };
        if let Err(error) = result {
            tracing::warn!(%error, "cannot record a failed webhook delivery (retried after its lease)");
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

/// One signed POST.
async fn deliver(http: &reqwest::Client, endpoint: &WebhookEndpoint, row: &OutboxRow) -> Outcome {
    let Ok(data) = serde_json::value::RawValue::from_string(row.data.clone()) else {
        return Outcome::Failed("stored event data is not JSON".into());
    };
    let body = match serde_json::to_vec(&Delivery {
        id: row.id.to_string(),
        event: &row.event,
        created_at: row.created_at,
        request_id: row.request_id.as_deref(),
        data: &data,
    }) {
        Ok(body) => body,
        Err(e) => return Outcome::Failed(format!("encode: {e}")),
    };
    let t = (now_millis() / 1000) as u64;
    let signature = signature(endpoint.secret.as_str().as_bytes(), t, &body);
    let sent = http
        .post(&endpoint.url)
        .header("Content-Type", "application/json")
        .header("X-Xindao-Signature", signature)
        .header("X-Xindao-Delivery", row.id.to_string())
        .header("X-Xindao-Event", &row.event)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Outcome::Delivered,
        Ok(response) => {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(ERROR_BYTES).collect();
            Outcome::Failed(format!("HTTP {status}: {text}"))
        }
        Err(error) => Outcome::Failed(format!("{error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_t_dot_body() {
        // Checked against: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempts in 0..40 {
            let step = (1000u64 << attempts.min(30)).min(BACKOFF_MAX_MS);
            let d = backoff_ms(1000, attempts);
            assert!(d >= step / 2 && d <= step, "{attempts}: {d}");
        }
    }
}

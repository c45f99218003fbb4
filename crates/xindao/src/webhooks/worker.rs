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

impl Worker {
    async fn run(self, shutdown: CancellationToken) {
        let mut inflight: JoinSet<(OutboxRow, Outcome)> = JoinSet::new();
        let mut depth_at = tokio::time::Instant::now();
        let concurrency = self.config.webhook_concurrency;
        while !shutdown.is_cancelled() {
            if depth_at.elapsed() >= DEPTH_EVERY {
                depth_at = tokio::time::Instant::now();
                self.measure_depth().await;
            }
            // Settle what finished first: a delivered row must be gone before its successor can be claimed.
            let mut done = Vec::new();
            while let Some(joined) = inflight.try_join_next() {
                if let Ok((row, outcome)) = joined {
                    self.settle(row, outcome, &mut done).await;
                }
            }
            if !done.is_empty() {
                if let Err(error) = self.store.webhook_done(done).await {
                    tracing::warn!(%error, "cannot delete delivered webhooks (they will be sent again)");
                }
            }
            let room = concurrency.saturating_sub(inflight.len());
            let claimed = if room > 0 {
                let lease = self.config.webhook_lease_ms as i64;
                match self
                    .store
                    .webhook_claim(&self.node, now_millis(), lease, room)
                    .await
                {
                    Ok(rows) => rows,
                    Err(error) => {
                        tracing::warn!(%error, "cannot claim webhook deliveries");
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            let got = claimed.len();
            for row in claimed {
                let endpoint = self.endpoints.get(&row.endpoint).cloned();
                let http = self.http.clone();
                inflight.spawn(async move {
                    let outcome = match endpoint {
                        Some(endpoint) => deliver(&http, &endpoint, &row).await,
                        None => Outcome::Failed("endpoint no longer configured".into()),
                    };
                    (row, outcome)
                });
            }
            if got == 0 {
                // Wake for the first finished delivery, or poll again after a while.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    Some(Ok((row, outcome))) = inflight.join_next(), if !inflight.is_empty() => {
                        let mut done = Vec::new();
                        self.settle(row, outcome, &mut done).await;
                        if !done.is_empty() {
                            if let Err(error) = self.store.webhook_done(done).await {
                                tracing::warn!(%error, "cannot delete delivered webhooks");
                            }
                        }
                    }
                }
            } else {
                tokio::task::yield_now().await;
            }
        }
    }

    async fn settle(&self, row: OutboxRow, outcome: Outcome, done: &mut Vec<i64>) {
        match outcome {
            Outcome::Delivered => {
                self.metrics.delivered.inc();
                let age = (now_millis() - row.created_at).max(0) as f64 / 1000.0;
                self.metrics.delivery_seconds.observe(age);
                done.push(row.id);
            }
            Outcome::Failed(error) => {
                self.metrics.failures.inc();
                let now = now_millis();
                let delay = backoff_ms(self.config.webhook_backoff_ms, row.attempts) as Millis;
                let window = self.config.webhook_retry_secs.saturating_mul(1000) as Millis;
                let result = if now + delay - row.created_at > window {
                    tracing::warn!(id = row.id, endpoint = %row.endpoint, %error, "webhook delivery dead-lettered");
                    self.metrics.dead.inc();
                    self.store.webhook_bury(row.id, error).await
                } else {
                    tracing::debug!(id = row.id, endpoint = %row.endpoint, %error, delay, "webhook delivery failed");
                    self.store.webhook_retry(row.id, now + delay, error).await
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "cannot record a failed webhook delivery (retried after its lease)");
                }
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

/// One signed POST.
async fn deliver(http: &reqwest::Client, endpoint: &WebhookEndpoint, row: &OutboxRow) -> Outcome {
    let Ok(data) = serde_json::value::RawValue::from_string(row.data.clone()) else {
        return Outcome::Failed("stored event data is not JSON".into());
    };
    let body = match serde_json::to_vec(&Delivery {
        id: row.id.to_string(),
        event: &row.event,
        created_at: row.created_at,
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

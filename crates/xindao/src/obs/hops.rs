//! The per-hop histograms and counters: where a request's time goes between the upgrade and the store's
//! commit, and where a push's time goes between the commit and the other nodes.
//!
//! They are process-wide (one set per process, registered into every [`crate::metrics::Metrics`]): the store,
//! its writers and the bus measure without being handed a metrics handle, so the delivery path and the stores
//! gain one `observe` call each, not a new parameter. A process runs one server in production; tests that run
//! several in one process see the sum (they assert names, labels and growth, not exact values).
//!
//! Labels come only from bounded sets: an operation name, an error code, a close code, or a node name
//! ([`node_label`]: at most [`MAX_NODES`] distinct, then `other`). Never a user, a conversation or an address.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Distinct node names a node-labelled metric keeps before it counts the rest as `other`.
pub const MAX_NODES: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: &'static str,
}

/// Node names seen by [`node_label`].
static SEEN: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

/// Time buckets from 50 µs to about 26 s (doubling).
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

pub struct Hops {
    /// `GET /v1/ws` received to the 101 decided (authentication and admission).
    pub upgrade: Histogram,
    /// A WebSocket frame read to its handler starting.
    pub queued: Histogram,
    /// A `send` queued for its commit to the commit acknowledged (group commit included).
    pub commit_wait: Histogram,
    /// Messages per store commit.
    pub commit_batch: Histogram,
    /// Waiting for a pooled PostgreSQL connection.
    pub pool_wait: Histogram,
    /// A push queued on a connection to its task handing it to the socket (sampled: one push in
    /// [`crate::hub::outbox::PUSH_WAIT_SAMPLE`] per connection).
    pub push_wait: Histogram,
    /// Handing one committed message's pushes to the bus (local delivery into the hub included).
    pub fanout: Histogram,
    /// Publishing on Redis/NATS: one pipelined batch (Redis) or one envelope (NATS).
    pub bus_publish: Histogram,
    /// A cluster envelope's sending time (the sender's clock) to its arrival here, by sending node.
    pub bus_receive_lag: Family<NodeLabels, Histogram>,
    /// Error replies (WebSocket and HTTP) by error code.
    pub errors: Family<CodeLabels, Counter>,
}

static HOPS: LazyLock<Hops> = LazyLock::new(|| Hops {
    upgrade: seconds(),
    queued: seconds(),
    commit_wait: seconds(),
    commit_batch: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
    pool_wait: seconds(),
    fanout: seconds(),
    push_wait: seconds(),
    bus_publish: seconds(),
    bus_receive_lag: Family::new_with_constructor(seconds),
    errors: Family::default(),
});

/// The process's per-hop metrics.
pub fn hops() -> &'static Hops {
    &HOPS
}

/// Registers the per-hop metrics into `registry` (shared: every registry shows the same values).
pub(crate) fn register(registry: &mut Registry) {
    let h = hops();
    registry.register(
        "upgrade_seconds",
        "WebSocket upgrade request received to 101 decided (authentication, admission)",
        h.upgrade.clone(),
    );
    registry.register(
        "request_queued_seconds",
        "WebSocket frame read to its handler starting",
        h.queued.clone(),
    );
    registry.register(
        "commit_wait_seconds",
        "A send queued for the store's commit to its commit acknowledged",
        h.commit_wait.clone(),
    );
    registry.register(
        "commit_batch_size",
        "Messages per store commit (group commit)",
        h.commit_batch.clone(),
    );
    registry.register(
        "store_pool_wait_seconds",
        "Waiting for a pooled PostgreSQL connection",
        h.pool_wait.clone(),
    );
    registry.register(
        "fanout_seconds",
        "Handing one committed message's pushes to the bus, local hub delivery included",
        h.fanout.clone(),
    );
    registry.register(
        "push_wait_seconds",
        "A push queued on a connection to its write to the socket (one push in 16 per connection, sampled)",
        h.push_wait.clone(),
    );
    registry.register(
        "bus_publish_seconds",
        "Publishing on the cluster bus: one pipelined batch (Redis) or one envelope (NATS)",
        h.bus_publish.clone(),
    );
    registry.register(
        "bus_receive_lag_seconds",
        "A cluster envelope's sending time (sender's clock) to its arrival, by sending node",
        h.bus_receive_lag.clone(),
    );
    registry.register(
        "errors",
        "Error replies (WebSocket and HTTP) by error code",
        h.errors.clone(),
    );
}

/// Counts an error reply.
pub fn error(code: &'static str) {
    hops().errors.get_or_create(&CodeLabels { code }).inc();
}

/// Observes a cluster envelope from `node` sent at `sent_ms` (its clock) and received at `now_ms` (ours).
pub fn bus_received(node: &str, sent_ms: u64, now_ms: u64) {
    if !detailed() {
        return;
    }
    let lag = now_ms.saturating_sub(sent_ms) as f64 / 1000.0;
    hops()
        .bus_receive_lag
        .get_or_create(&NodeLabels {
            node: node_label(node),
        })
        .observe(lag);
}

/// The names of the nodes heard on the bus since this process started (at most [`MAX_NODES`]).
pub fn nodes_heard() -> Vec<String> {
    let mut names: Vec<String> = SEEN.lock().iter().cloned().collect();
    names.sort();
    names
}

/// Whether the histograms are kept (`detailed_metrics`); counters and gauges always are.
static DETAILED: AtomicBool = AtomicBool::new(true);

/// Turns the per-hop and per-request histograms on or off for the process (`detailed_metrics`), so that
/// their cost can be measured against a run without them.
pub fn set_detailed(on: bool) {
    DETAILED.store(on, Ordering::Relaxed);
}

/// Whether the histograms are kept.
pub fn detailed() -> bool {
    DETAILED.load(Ordering::Relaxed)
}

/// Observes `elapsed` in seconds (when [`detailed`]).
pub fn observe(histogram: &Histogram, elapsed: Duration) {
    if detailed() {
        histogram.observe(elapsed.as_secs_f64());
    }
}

/// Observes a plain value, such as a batch size (when [`detailed`]).
pub fn observe_value(histogram: &Histogram, value: f64) {
    if detailed() {
        histogram.observe(value);
    }
}

/// The label for node `name`: itself (at most 64 characters) while fewer than [`MAX_NODES`] names have been
/// seen, else `other`. Node names are random per start when `node_id` is unset, so a long-lived node that
/// sees many restarts of its peers would otherwise grow a series per restart.
pub fn node_label(name: &str) -> String {
    let name: String = name.chars().take(64).collect();
    let mut seen = SEEN.lock();
    if seen.contains(&name) {
        return name;
    }
    if seen.len() < MAX_NODES {
        seen.insert(name.clone());
        return name;
    }
    "other".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_labels_are_bounded() {
        let labels: HashSet<String> = (0..1000)
            .map(|i| node_label(&format!("node-{i}")))
            .collect();
        assert!(labels.len() <= MAX_NODES + 1, "{}", labels.len());
        assert!(labels.contains("other"));
        assert!(node_label(&"x".repeat(500)).len() <= 64);
    }
}

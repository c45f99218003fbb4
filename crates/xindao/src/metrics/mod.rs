//! Prometheus metrics, served at `GET /metrics`. Request latency per operation and outcome lets an operator
//! tell a slow store (`send` slow, `ping` fast) from a slow network hop (both fast here, slow at the client).

mod notify;
mod webhooks;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use notify::NotifyMetrics;
pub use webhooks::WebhookMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub op: &'static str,
    pub outcome: &'static str,
}

/// Why a cluster bus envelope was dropped (a bounded set: see `cluster::auth::Rejected`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BusRejectLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    pub code: u16,
}

/// All metrics of one server. Clones share the same counters.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub connections: Gauge,
    pub connections_opened: Counter,
    pub closes: Family<CloseLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RequestLabels, Histogram>,
    pub messages_committed: Counter,
    pub pushes: Counter,
    pub slow_consumers: Counter,
    pub upgrades_refused: Counter,
    /// TCP connections closed at accept: over max_pending_connections or max_connections_per_ip.
    pub accepts_refused: Counter,
    /// HTTP connections accepted and not (yet) upgraded.
    pub pending_connections: Gauge,
    /// 1 while the bus reaches the other nodes (always, for the single-node bus); set at every scrape.
    pub bus_connected: Gauge,
    /// Cluster bus envelopes dropped unapplied, by reason.
    pub bus_rejected: Family<BusRejectLabels, Counter>,
    pub webhooks: WebhookMetrics,
    /// WeChat's content check and offline notifications.
    pub notify: NotifyMetrics,
    /// Round trips reported by the clients (`client_stats`).
    pub client_rtt: crate::obs::client_rtt::ClientRtt,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("xindao");
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open WebSocket connections",
            connections.clone(),
        );
        let connections_opened = Counter::default();
        registry.register(
            "connections_opened",
            "WebSocket connections accepted",
            connections_opened.clone(),
        );
        let closes = Family::<CloseLabels, Counter>::default();
        registry.register(
            "connection_closes",
            "Connections closed by the server, by close code",
            closes.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "WebSocket requests by operation and outcome",
            requests.clone(),
        );
        let request_seconds = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        registry.register(
            "request_seconds",
            "Time to answer a WebSocket request",
            request_seconds.clone(),
        );
        let messages_committed = Counter::default();
        registry.register(
            "messages_committed",
            "Messages committed to the store",
            messages_committed.clone(),
        );
        let pushes = Counter::default();
        registry.register(
            "pushes",
            "Frames queued to connections by the hub",
            pushes.clone(),
        );
        let slow_consumers = Counter::default();
        registry.register(
            "slow_consumers",
            "Connections dropped because their queue was full",
            slow_consumers.clone(),
        );
        let upgrades_refused = Counter::default();
        registry.register(
            "upgrades_refused",
            "WebSocket upgrades refused before upgrading",
            upgrades_refused.clone(),
        );
        let accepts_refused = Counter::default();
        registry.register(
            "accepts_refused",
            "TCP connections closed as soon as accepted (max_pending_connections or max_connections_per_ip)",
            accepts_refused.clone(),
        );
        let pending_connections = Gauge::default();
        registry.register(
            "pending_connections",
            "HTTP connections accepted and not upgraded to a WebSocket",
            pending_connections.clone(),
        );
        let bus_connected = Gauge::default();
        registry.register(
            "bus_connected",
            "1 while the cluster bus reaches the other nodes (always 1 on a single node)",
            bus_connected.clone(),
        );
        let bus_rejected = Family::<BusRejectLabels, Counter>::default();
        registry.register(
            "bus_rejected",
            "Cluster bus envelopes dropped unapplied (oversize, unsigned, bad_signature, malformed, stale, replayed)",
            bus_rejected.clone(),
        );
        crate::obs::hops::register(&mut registry);
        let webhooks = WebhookMetrics::register(&mut registry);
        let notify = NotifyMetrics::register(&mut registry);
        let client_rtt = crate::obs::client_rtt::ClientRtt::register(&mut registry);
        Metrics {
            client_rtt,
            webhooks,
            notify,
            registry: Arc::new(registry),
            connections,
            connections_opened,
            closes,
            requests,
            request_seconds,
            messages_committed,
            pushes,
            slow_consumers,
            upgrades_refused,
            accepts_refused,
            pending_connections,
            bus_connected,
            bus_rejected,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "cannot encode metrics");
        }
        out
    }

    /// Counts a WebSocket request by operation and outcome, and (with `detailed_metrics`) its duration.
    pub fn record_request(&self, op: &'static str, outcome: &'static str, seconds: f64) {
        let labels = RequestLabels { op, outcome };
        self.requests.get_or_create(&labels).inc();
        if crate::obs::hops::detailed() {
            self.request_seconds.get_or_create(&labels).observe(seconds);
        }
    }
}

//! Webhook and before-send metrics, registered with the server's others.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct WebhookMetrics {
    pub delivered: Counter,
    pub failures: Counter,
    pub dead: Counter,
    /// Events not kept because the outbox was full (an alert).
    pub dropped: Gauge,
    pub outbox_depth: Gauge,
    /// Seconds the oldest waiting delivery has waited (0 when none).
    pub lag_seconds: Gauge,
    /// Seconds from an event's commit to its successful delivery.
    pub delivery_seconds: Histogram,
    pub before_send_calls: Counter,
    pub before_send_rejected: Counter,
    pub before_send_failures: Counter,
    /// Committed messages not checked for `user.offline_message` because the check's queue was full.
    pub offline_skipped: Counter,
}

impl WebhookMetrics {
    pub fn register(registry: &mut Registry) -> WebhookMetrics {
        let m = WebhookMetrics {
            delivered: Counter::default(),
            failures: Counter::default(),
            dead: Counter::default(),
            dropped: Gauge::default(),
            outbox_depth: Gauge::default(),
            lag_seconds: Gauge::default(),
            delivery_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            before_send_calls: Counter::default(),
            before_send_rejected: Counter::default(),
            before_send_failures: Counter::default(),
            offline_skipped: Counter::default(),
        };
        registry.register(
            "webhook_delivered",
            "Webhook deliveries a receiver accepted",
            m.delivered.clone(),
        );
        registry.register(
            "webhook_failures",
            "Webhook delivery attempts that failed (retried later)",
            m.failures.clone(),
        );
        registry.register(
            "webhook_dead",
            "Webhook deliveries parked in the dead-letter list",
            m.dead.clone(),
        );
        registry.register(
            "webhook_dropped",
            "Webhook events not kept because the outbox was full (alert on any)",
            m.dropped.clone(),
        );
        registry.register(
            "webhook_outbox_depth",
            "Webhook deliveries waiting in the outbox",
            m.outbox_depth.clone(),
        );
        registry.register(
            "webhook_lag_seconds",
            "Age of the oldest waiting webhook delivery, in seconds",
            m.lag_seconds.clone(),
        );
        registry.register(
            "webhook_delivery_seconds",
            "Seconds from an event's commit to its delivery",
            m.delivery_seconds.clone(),
        );
        registry.register(
            "before_send_calls",
            "Calls of the before-send hook",
            m.before_send_calls.clone(),
        );
        registry.register(
            "before_send_rejected",
            "Messages the before-send hook rejected",
            m.before_send_rejected.clone(),
        );
        registry.register(
            "before_send_failures",
            "Before-send calls that failed (down, timeout, bad answer)",
            m.before_send_failures.clone(),
        );
        registry.register(
            "webhook_offline_skipped",
            "Committed messages not checked for user.offline_message (its queue was full)",
            m.offline_skipped.clone(),
        );
        m
    }
}

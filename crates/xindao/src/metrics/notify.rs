//! Metrics of WeChat's content check and of offline notifications, registered with the server's others.
//! Their labels are closed sets (the `&'static str`s below), so their series never grow with users.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The outcome of one content check: `pass`, `risky`, `review` or `error` (no verdict could be had).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub result: &'static str,
}

/// One offline notification: `channel` `webhook` or `wechat`; `result` `sent` (the webhook event kept in
/// the outbox, or WeChat accepted the subscribe message), `coalesced` (one went out within the window),
/// `no_grant` (WeChat: the user holds no grant), `refused` (WeChat's 43101) or `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub channel: &'static str,
    pub result: &'static str,
}

#[derive(Clone)]
pub struct NotifyMetrics {
    content_checks: Family<CheckLabels, Counter>,
    /// Seconds a send waited for WeChat's content check (all its parts, bounded by its timeout).
    pub content_check_seconds: Histogram,
    notifications: Family<NotificationLabels, Counter>,
}

impl NotifyMetrics {
    pub fn register(registry: &mut Registry) -> NotifyMetrics {
        let m = NotifyMetrics {
            content_checks: Family::default(),
            // 5 ms to ~20 s.
            content_check_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 13)),
            notifications: Family::default(),
        };
        registry.register(
            "content_checks",
            "WeChat content checks by result (pass, risky, review, error)",
            m.content_checks.clone(),
        );
        registry.register(
            "content_check_seconds",
            "Time a send waited for WeChat's content check",
            m.content_check_seconds.clone(),
        );
        registry.register(
            "offline_notifications",
            "Offline notifications by channel (webhook, wechat) and result (sent, coalesced, no_grant, refused, error)",
            m.notifications.clone(),
        );
        m
    }

    /// Counts a content check's result.
    pub fn checked(&self, result: &'static str) {
        self.content_checks
            .get_or_create(&CheckLabels { result })
            .inc();
    }

    /// Counts `count` offline notifications of `channel` with `result`.
    pub fn notified(&self, channel: &'static str, result: &'static str, count: u64) {
        if count > 0 {
            self.notifications
                .get_or_create(&NotificationLabels { channel, result })
                .inc_by(count);
        }
    }
}

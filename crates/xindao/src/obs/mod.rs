//! Observability that answers "which hop holds the time": request ids carried through every log line of a
//! request ([`request_id`], with the HTTP middleware in `http::request_id`), the server's own split of each request's time reported back to the client
//! ([`timing`]: a WebSocket reply's `timing`, HTTP's `Server-Timing`), and the per-hop histograms behind the
//! dashboards ([`hops`]), the round trips the clients measure themselves ([`client_rtt`]), and the optional
//! OpenTelemetry export of the request spans as traces ([`otel`]).
//!
//! Why its own module: the delivery path (hub, fan-out, socket) is tuned for throughput elsewhere; what is
//! measured here is a handful of `observe` calls there and the rest lives here.

pub mod client_rtt;
pub mod hops;
pub mod otel;
pub mod request_id;
pub mod timing;

use std::sync::OnceLock;

use crate::config::Config;

/// The name this node reports in `timing.node` and `Server-Timing`: `node_id` when set, else the host name.
pub fn node_name(config: &Config) -> &str {
    match config.node_id.as_deref() {
        Some(id) if !id.is_empty() => id,
        _ => host_name(),
    }
}

fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "xindao".to_string())
    })
}

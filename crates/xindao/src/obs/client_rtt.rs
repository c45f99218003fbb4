//! Round trips as the clients measure them (`client_stats`, docs/protocol.md): the one hop no server-side
//! metric sees is the client's own network, so the SDK counts its `ping` and `send` round trips in fixed
//! buckets and reports the counts every few minutes; here they become `xindao_client_rtt_seconds`, by client
//! kind and by the network the client connects from.
//!
//! Labels stay bounded: the kind is one of three, and the network is the client address's IPv4 /16 or IPv6
//! /32, kept for the first `client_rtt_max_prefixes` networks this process sees; later ones count as `other`
//! (series are never removed, so the first networks keep their series until the process restarts).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};
use crate::protocol::op::{ClientKind, ClientStatsArgs};

/// The upper bounds, in milliseconds, of a report's buckets; a report has one count per bound plus one for
/// round trips above the last (documented in docs/protocol.md, `client_stats`).
pub const BOUNDS_MS: [u32; 10] = [25, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800];

/// Most round trips one report may count.
pub const MAX_SAMPLES: u64 = 1000;

/// The network label of a client without a known address, or past the cap.
const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientRttLabels {
    pub kind: &'static str,
    pub network: String,
}

/// The histogram and the networks it keeps a series for. Clones share both.
#[derive(Clone)]
pub struct ClientRtt {
    histograms: Family<ClientRttLabels, Histogram>,
    networks: Arc<Mutex<HashSet<String>>>,
    max_networks: Arc<AtomicUsize>,
}

fn seconds(ms: u32) -> f64 {
    f64::from(ms) / 1000.0
}

impl ClientRtt {
    pub(crate) fn register(registry: &mut Registry) -> ClientRtt {
        let histograms = Family::<ClientRttLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(BOUNDS_MS.map(seconds))
        });
        registry.register(
            "client_rtt_seconds",
            "Round trips (ping, send) measured by the clients, by client kind and network (IPv4 /16, IPv6 /32)",
            histograms.clone(),
        );
        ClientRtt {
            histograms,
            networks: Arc::default(),
            max_networks: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Sets how many distinct networks get their own series (`client_rtt_max_prefixes`).
    pub fn set_max_networks(&self, max: usize) {
        self.max_networks.store(max, Ordering::Relaxed);
    }

    /// The label for a client at `address`: its network while fewer than the cap have been seen, else `other`.
    fn network_label(&self, address: Option<IpAddr>) -> String {
        let Some(address) = address else {
            return OTHER.to_string();
        };
        let network = network_of(address);
        let mut seen = self.networks.lock();
        if seen.contains(&network) {
            return network;
        }
        if seen.len() < self.max_networks.load(Ordering::Relaxed) {
            seen.insert(network.clone());
            return network;
        }
        OTHER.to_string()
    }

    /// Whether a report is well-formed: one count per bucket, 1 to [`MAX_SAMPLES`] round trips in all.
    pub fn check(&self, report: &ClientStatsArgs) -> Result<()> {
        if report.buckets.len() != BOUNDS_MS.len() + 1 {
            return Err(Error::InvalidArgs(format!(
                "buckets must hold {} counts (one per bound, then one above the last)",
                BOUNDS_MS.len() + 1
            )));
        }
        let total = total(report);
        if total == 0 || total > MAX_SAMPLES {
            return Err(Error::InvalidArgs(format!(
                "a report counts 1 to {MAX_SAMPLES} round trips"
            )));
        }
        Ok(())
    }

    /// Adds a [checked](Self::check) report's counts: each round trip is observed at its bucket's upper bound
    /// (above the last bound: twice it), so the histogram's buckets are exact and its sum is an upper
    /// estimate. Returns how many round trips it counted.
    pub fn record(&self, address: Option<IpAddr>, report: &ClientStatsArgs) -> u64 {
        let labels = ClientRttLabels {
            kind: kind_label(report.kind),
            network: self.network_label(address),
        };
        let histogram = self.histograms.get_or_create(&labels);
        let above = BOUNDS_MS[BOUNDS_MS.len() - 1] * 2;
        for (&count, &bound) in report.buckets.iter().zip(BOUNDS_MS.iter().chain([&above])) {
            for _ in 0..count.min(MAX_SAMPLES as u32) {
                histogram.observe(seconds(bound));
            }
        }
        total(report)
    }
}

fn total(report: &ClientStatsArgs) -> u64 {
    report.buckets.iter().map(|&n| u64::from(n)).sum()
}

fn kind_label(kind: ClientKind) -> &'static str {
    match kind {
        ClientKind::Miniprogram => "miniprogram",
        ClientKind::Browser => "browser",
        ClientKind::Node => "node",
    }
}

/// A client address's network: its IPv4 /16 or IPv6 /32 (an IPv4-mapped IPv6 address counts as IPv4).
pub fn network_of(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => {
            Ipv4Net::new(v4, 16).map_or_else(|_| OTHER.into(), |n| n.trunc().to_string())
        }
        IpAddr::V6(v6) => {
            Ipv6Net::new(v6, 32).map_or_else(|_| OTHER.into(), |n| n.trunc().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_slash_16_and_slash_32() {
        assert_eq!(network_of("10.1.2.3".parse().unwrap()), "10.1.0.0/16");
        assert_eq!(
            network_of("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.0.0/16"
        );
        assert_eq!(
            network_of("2001:db8:1:2::5".parse().unwrap()),
            "2001:db8::/32"
        );
    }
}

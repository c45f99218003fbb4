//! Who is on the other end of a connection, and how many connections each address holds.
//!
//! The client address is the socket's peer, unless that peer is a configured trusted proxy: then it is the
//! rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (entries to its left were written by
//! the client and prove nothing). [`PerIp`] counts connections per address and refuses one over the cap; a
//! [`PerIpGuard`] gives its place back when dropped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::HeaderMap;
use ipnet::IpNet;
use parking_lot::Mutex;

/// The socket peer of the connection a request came on (a request extension set by the accept loop).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Whether `ip` is one of the trusted proxies (an IPv4-mapped IPv6 address counts as its IPv4 address).
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the rightmost address of
/// `X-Forwarded-For` that is not a trusted proxy (every header line, in order; an entry that does not parse
/// ends the walk at the last good address).
pub fn client_ip(trusted: &[IpNet], peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let mut client = peer.ip().to_canonical();
    if !is_trusted(trusted, client) {
        if headers.contains_key("x-forwarded-for") {
            warn_untrusted_forwarder(client);
        }
        return client;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for entry in entries.into_iter().rev() {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(trusted, client) {
            break;
        }
    }
    client
}

/// Says once per process that a peer sent X-Forwarded-For without being a trusted proxy: behind a proxy that
/// is not listed, every client shares the proxy's per-address cap.
fn warn_untrusted_forwarder(peer: IpAddr) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            %peer,
            "X-Forwarded-For ignored from a peer that is not in trusted_proxies: if it is your proxy, \
             list it there, or all its clients share one address's connection cap"
        );
    }
}

/// Connections per address, capped.
#[derive(Clone)]
pub struct PerIp {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    limit: usize,
}

impl PerIp {
    pub fn new(limit: usize) -> PerIp {
        PerIp {
            counts: Arc::default(),
            limit,
        }
    }

    /// A place for one more connection from `ip`, or None when it already holds `limit`.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<PerIpGuard> {
        let mut counts = self.counts.lock();
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(PerIpGuard {
            counts: self.counts.clone(),
            ip,
        })
    }
}

/// One connection's place in [`PerIp`]; dropping it frees the place.
pub struct PerIpGuard {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in xff {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let stranger: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let forwarded = headers(&["1.1.1.1, 198.51.100.7"]);
        assert_eq!(client_ip(&trusted, stranger, &forwarded), ip("203.0.113.9"));
        assert_eq!(client_ip(&trusted, proxy, &forwarded), ip("198.51.100.7"));
        // A chain of trusted proxies is walked through; a forged left part is ignored.
        let chained = headers(&["6.6.6.6, 198.51.100.7", "10.9.9.9"]);
        assert_eq!(client_ip(&trusted, proxy, &chained), ip("198.51.100.7"));
        // No header: the proxy itself.
        assert_eq!(client_ip(&trusted, proxy, &headers(&[])), ip("10.1.2.3"));
        assert_eq!(client_ip(&[], proxy, &forwarded), ip("10.1.2.3"));
        // Garbage stops the walk at the last good address.
        assert_eq!(
            client_ip(&trusted, proxy, &headers(&["nonsense"])),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn per_ip_places_are_given_back() {
        let per_ip = PerIp::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = per_ip.try_acquire(ip).unwrap();
        let _b = per_ip.try_acquire(ip).unwrap();
        assert!(per_ip.try_acquire(ip).is_none());
        assert!(per_ip.try_acquire("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert!(per_ip.try_acquire(ip).is_some());
    }
}

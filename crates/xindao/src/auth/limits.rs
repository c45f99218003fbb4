//! Login rate limits: one per client address and one for the whole node, checked before a login does any work
//! (a WeChat call, a user, a session); and one per session for connect tickets (each a store write).
//!
//! Without them one anonymous client turns each request into a `code2Session` call on the app's WeChat quota
//! and a session row. The per-address limiter is keyed and bounded: keys whose bucket is full again are
//! dropped every minute ([`LoginLimits::forget_idle`]), and past [`MAX_TRACKED`] addresses every new address
//! shares one bucket, so an attacker with many addresses cannot grow it (IPv6 clients count per /64, the
//! block one subscriber usually holds).

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};

use crate::config::Config;
use crate::error::{Error, Result};

/// Most client addresses tracked at once (about 100 bytes each).
const MAX_TRACKED: usize = 100_000;

/// The key every address shares once [`MAX_TRACKED`] are tracked.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

type Instant = <MonotonicClock as Clock>::Instant;
type PerAddress =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, MonotonicClock, NoOpMiddleware<Instant>>;
type PerSession = RateLimiter<
    [u8; 32],
    DefaultKeyedStateStore<[u8; 32]>,
    MonotonicClock,
    NoOpMiddleware<Instant>,
>;
type Global = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<Instant>>;

/// Connect tickets a session may take per minute (with a burst of as many): each is a store write, and a
/// client reconnecting with backoff takes a few.
pub const TICKETS_PER_MINUTE: u32 = 30;

pub struct LoginLimits {
    per_address: PerAddress,
    global: Global,
    /// Connect tickets per session (by token hash), bounded like `per_address`.
    tickets: PerSession,
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// The rate-limit error for a refusal: when to retry.
fn refused(not_until: NotUntil<Instant>) -> Error {
    let wait = not_until.wait_time_from(MonotonicClock.now());
    Error::RateLimited {
        retry_after_ms: (wait.as_millis() as u64).max(1),
    }
}

/// The key of a client address: IPv4 as is, IPv6 by its /64 (IPv4-mapped IPv6 as IPv4).
fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl LoginLimits {
    pub fn new(config: &Config) -> LoginLimits {
        let per_address = Quota::per_minute(nonzero(config.login_per_ip_per_minute));
        let global = Quota::per_second(nonzero(config.login_per_second));
        LoginLimits {
            per_address: RateLimiter::dashmap_with_clock(per_address, MonotonicClock),
            global: RateLimiter::direct_with_clock(global, MonotonicClock),
            tickets: RateLimiter::dashmap_with_clock(
                Quota::per_minute(nonzero(TICKETS_PER_MINUTE)),
                MonotonicClock,
            ),
        }
    }

    /// Takes one login from `client`'s allowance and the node's, or says when to retry.
    pub fn check(&self, client: IpAddr) -> Result<()> {
        let mut key = key_of(client);
        if self.per_address.len() >= MAX_TRACKED {
            key = OVERFLOW;
        }
        self.per_address.check_key(&key).map_err(refused)?;
        self.global.check().map_err(refused)
    }

    /// Takes one connect ticket from the session's allowance, or says when to retry.
    pub fn check_ticket(&self, token_hash: [u8; 32]) -> Result<()> {
        let key = if self.tickets.len() >= MAX_TRACKED {
            [0; 32]
        } else {
            token_hash
        };
        self.tickets.check_key(&key).map_err(refused)
    }

    /// Drops the addresses and sessions whose allowance is full again (called every minute).
    pub fn forget_idle(&self) {
        self.per_address.retain_recent();
        self.per_address.shrink_to_fit();
        self.tickets.retain_recent();
        self.tickets.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(key_of(a), key_of(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(key_of(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn each_address_has_its_allowance_within_the_nodes() {
        let limits = LoginLimits::new(&Config {
            login_per_ip_per_minute: 2,
            login_per_second: 3,
            ..Config::default()
        });
        let (a, b, c) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        assert!(limits.check(a).is_ok() && limits.check(a).is_ok());
        match limits.check(a) {
            Err(Error::RateLimited { retry_after_ms }) => {
                assert!(
                    (20_000..=30_000).contains(&retry_after_ms),
                    "{retry_after_ms}"
                )
            }
            other => panic!("expected rate_limited, got {other:?}"),
        }
        assert!(limits.check(b).is_ok(), "another address is not limited");
        assert!(
            matches!(limits.check(c), Err(Error::RateLimited { .. })),
            "the node's allowance (3/s) is spent"
        );
    }
}

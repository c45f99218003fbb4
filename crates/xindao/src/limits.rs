//! Per-user rate limits on the operations one user can turn against others: adding people to rooms
//! (`room_adds_per_min`) and looking users up (`lookups_per_min`: `user_find`, and opening a direct
//! conversation with someone new, which tells whether an id exists). Counted per node, in memory; the
//! per-connection request limit (`rate_per_sec`) still applies on top. The same buckets keyed by connection
//! bound what one connection may report (`client_stats`).

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::error::{Error, Result};
use crate::model::UserId;

type Keyed<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, MonotonicClock, NoOpMiddleware<std::time::Instant>>;

/// Forget users whose buckets are full again every this many checks, so the map holds the recently active only.
const SWEEP_EVERY: u64 = 4096;

/// A token bucket per key: `per_minute` tokens a minute, bursts of `per_minute`.
pub(crate) struct PerKey<K: Hash + Eq + Clone> {
    limiter: Keyed<K>,
    checks: AtomicU64,
}

/// A token bucket per user.
pub(crate) type PerUser = PerKey<UserId>;

impl<K: Hash + Eq + Clone> PerKey<K> {
    pub(crate) fn per_minute(per_minute: u32) -> PerKey<K> {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        PerKey {
            limiter: RateLimiter::dashmap_with_clock(Quota::per_minute(per_minute), MonotonicClock),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one token of `key`'s bucket, or answers `rate_limited` with when to retry.
    pub(crate) fn check(&self, key: K) -> Result<()> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(MonotonicClock.now());
            Error::RateLimited {
                retry_after_ms: wait.as_millis().max(1) as u64,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_has_their_own_bucket() {
        let limits = PerUser::per_minute(2);
        assert!(limits.check(1).is_ok());
        assert!(limits.check(1).is_ok());
        let refused = limits.check(1).unwrap_err();
        assert_eq!(refused.code(), "rate_limited");
        assert!(matches!(refused, Error::RateLimited { retry_after_ms } if retry_after_ms > 1000));
        assert!(limits.check(2).is_ok(), "another user is not affected");
    }
}

//! The server API's state on a node: a token bucket per API key, and the system account once it is known.
//! Kept beside the keys' checks (`auth`), below the HTTP handlers that use it (`http::server_api`), so that the
//! app's state does not reach up into the HTTP layer.

use std::num::NonZeroU32;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::User;

type Keyed = RateLimiter<
    i64,
    DefaultKeyedStateStore<i64>,
    MonotonicClock,
    NoOpMiddleware<std::time::Instant>,
>;

/// The server API's state on a node: the per-key rate limits and the system account, once known.
pub struct ServerApi {
    limiter: Keyed,
    /// The system account, once known (created on first use by the server API's handlers).
    pub system: OnceCell<User>,
}

impl ServerApi {
    pub fn new(config: &Config) -> ServerApi {
        let rate = NonZeroU32::new(config.server_api_rate_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.server_api_burst).unwrap_or(rate);
        ServerApi {
            limiter: RateLimiter::dashmap_with_clock(
                Quota::per_second(rate).allow_burst(burst),
                MonotonicClock,
            ),
            system: OnceCell::new(),
        }
    }

    /// Takes one token of the key's bucket, or answers `rate_limited` with when to retry.
    pub fn check_rate(&self, key_id: i64) -> Result<()> {
        self.limiter.check_key(&key_id).map_err(|not_until| {
            let wait = not_until.wait_time_from(MonotonicClock.now());
            Error::RateLimited {
                retry_after_ms: wait.as_millis().max(1) as u64,
            }
        })
    }
}

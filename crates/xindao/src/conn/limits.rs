//! A connection's request limits: the rate of requests, and the rate of refusals that counts as flooding.
//! Kept apart from `connection.rs`, which only asks whether a request may run.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::Config;

/// A connection's request rate limiter (and, over refusals, its flood detector).
type Limiter =
    RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<std::time::Instant>>;

/// The sliding window of the flood close: more than `rate_burst` refused requests within it close with 4008.
pub(super) const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// Whether a request may run now.
pub(super) enum Admission {
    Run,
    /// Over the rate: refuse it (`rate_limited`), the client may retry after this long.
    Wait(Duration),
    /// Refused too often within [`FLOOD_WINDOW`]: close with 4008.
    Flooding,
}

pub(super) struct Limits {
    requests: Limiter,
    /// Refusals: a burst of `rate_burst`, one more every [`FLOOD_WINDOW`] / `rate_burst`. A refusal it does
    /// not allow closes with 4008: one allowed request does not reset it, a steady excess exhausts it.
    refusals: Limiter,
}

impl Limits {
    pub(super) fn new(config: &Config) -> Limits {
        let burst = NonZeroU32::new(config.rate_burst).unwrap_or(NonZeroU32::MIN);
        let rate = NonZeroU32::new(config.rate_per_sec).unwrap_or(NonZeroU32::MIN);
        let refusal_period = (FLOOD_WINDOW / burst.get()).max(Duration::from_nanos(1));
        let refusals = Quota::with_period(refusal_period)
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        // std's monotonic clock: governor's default (quanta) calibrates a clock per limiter, which costs
        // CPUID traps on every connect in a VM.
        Limits {
            requests: RateLimiter::direct_with_clock(
                Quota::per_second(rate).allow_burst(burst),
                MonotonicClock,
            ),
            refusals: RateLimiter::direct_with_clock(refusals, MonotonicClock),
        }
    }

    /// Counts one request.
    pub(super) fn admit(&self) -> Admission {
        match self.requests.check() {
            Ok(()) => Admission::Run,
            Err(_) if self.refusals.check().is_err() => Admission::Flooding,
            Err(not_until) => Admission::Wait(not_until.wait_time_from(MonotonicClock.now())),
        }
    }
}

//! Replay protection for sealed envelopes: each sending process (boot) numbers its envelopes; a receiver
//! accepts each number once, and only while the envelope's sending time is within [`REPLAY_WINDOW`] of its
//! own clock. Memory is bounded: [`BOOTS_TRACKED`] boots × a few dozen bytes.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;

use super::rejected::Rejected;

/// An envelope sent longer ago (or further ahead) than this by the receiver's clock is stale: nodes need
/// clocks within a few seconds of each other (NTP).
pub const REPLAY_WINDOW: Duration = Duration::from_secs(10);

/// Sending boots remembered for replay checks; past this the least recently heard is forgotten.
const BOOTS_TRACKED: usize = 1024;
/// Counters remembered below the highest seen per boot (pushes from several threads may swap places).
const SEQ_WINDOW: u64 = 128;

struct Window {
    node: String,
    /// Highest counter accepted.
    top: u64,
    /// Bit i: counter `top - i` was accepted.
    seen: u128,
    last_ms: u64,
}

/// The receiver's side: what each sending boot has already said, for as long as it could be replayed.
/// Memory is bounded by [`BOOTS_TRACKED`] × a few dozen bytes, and only verified envelopes reach it.
#[derive(Default)]
pub struct ReplayGuard {
    boots: Mutex<HashMap<u64, Window>>,
}

impl ReplayGuard {
    /// Accepts an envelope (node, boot, seq) sent at `sent_ms`, once, inside the window around `now_ms`.
    pub fn check(
        &self,
        node: &str,
        boot: u64,
        seq: u64,
        sent_ms: u64,
        now_ms: u64,
    ) -> Result<(), Rejected> {
        let window_ms = REPLAY_WINDOW.as_millis() as u64;
        if sent_ms.abs_diff(now_ms) > window_ms {
            return Err(Rejected::Stale);
        }
        let mut boots = self.boots.lock();
        if !boots.contains_key(&boot) && boots.len() >= BOOTS_TRACKED {
            // Boots silent for longer than the window can only send stale envelopes now.
            boots.retain(|_, w| now_ms.saturating_sub(w.last_ms) <= 2 * window_ms);
            if boots.len() >= BOOTS_TRACKED {
                let oldest = boots.iter().min_by_key(|(_, w)| w.last_ms).map(|(b, _)| *b);
                if let Some(oldest) = oldest {
                    boots.remove(&oldest);
                }
            }
        }
        let window = boots.entry(boot).or_insert_with(|| Window {
            node: node.to_owned(),
            top: 0,
            seen: 0,
            last_ms: now_ms,
        });
        if window.node != node {
            return Err(Rejected::Replayed);
        }
        if seq > window.top {
            let shift = seq - window.top;
            window.seen = if shift >= 128 {
                0
            } else {
                window.seen << shift
            };
            window.seen |= 1;
            window.top = seq;
        } else {
            let back = window.top - seq;
            if back >= SEQ_WINDOW || window.seen & (1 << back) != 0 {
                return Err(Rejected::Replayed);
            }
            window.seen |= 1 << back;
        }
        window.last_ms = now_ms;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_is_accepted_once_and_only_while_fresh() {
        let guard = ReplayGuard::default();
        let now = 1_000_000;
        assert_eq!(guard.check("a", 7, 1, now, now), Ok(()));
        assert_eq!(guard.check("a", 7, 1, now, now), Err(Rejected::Replayed));
        assert_eq!(guard.check("a", 7, 3, now, now), Ok(()));
        // Out of order inside the window: accepted once.
        assert_eq!(guard.check("a", 7, 2, now, now), Ok(()));
        assert_eq!(guard.check("a", 7, 2, now, now), Err(Rejected::Replayed));
        assert_eq!(guard.check("a", 7, 500, now, now), Ok(()));
        assert_eq!(guard.check("a", 7, 4, now, now), Err(Rejected::Replayed));
        // Another boot (a restart) counts from the start again; a boot is one node's.
        assert_eq!(guard.check("a", 8, 1, now, now), Ok(()));
        assert_eq!(guard.check("b", 8, 2, now, now), Err(Rejected::Replayed));
        let window = REPLAY_WINDOW.as_millis() as u64;
        assert_eq!(
            guard.check("a", 7, 501, now - window - 1, now),
            Err(Rejected::Stale)
        );
        assert_eq!(
            guard.check("a", 7, 502, now + window + 1, now),
            Err(Rejected::Stale)
        );
    }

    #[test]
    fn the_guard_remembers_a_bounded_number_of_boots() {
        let guard = ReplayGuard::default();
        for boot in 0..(BOOTS_TRACKED as u64 * 3) {
            assert_eq!(guard.check("a", boot, 1, boot, boot), Ok(()));
        }
        assert!(guard.boots.lock().len() <= BOOTS_TRACKED);
    }
}

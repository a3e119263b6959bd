//! Exponential backoff with "equal" jitter (between half and all of the ceiling), so that many parked messages
//! never retry in lock-step while the delays still grow.

use rand::Rng;
use std::time::Duration;

/// Delays between retries: a random delay between half and all of `base × 2^attempt`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay scale of the first retry.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        let low = ceiling / 2; // at least half the ceiling, so delays still grow
        rand::rng().random_range(low..=ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_with_jitter() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for _ in 0..100 {
            let first = backoff.delay(0);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let third = backoff.delay(2);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
            assert!(backoff.delay(30) <= Duration::from_secs(2));
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff.delay(5)).collect();
        assert!(spread.len() > 10, "jitter spreads retries");
    }
}

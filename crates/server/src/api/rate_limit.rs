//! Per-user request rate limiting (token bucket): past it, 429 with `Retry-After`.

use super::problem::Problem;
use axum::http::StatusCode;
use chat4all_core::ids::UserId;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;

/// The per-user limiter; `None` when limiting is off.
#[derive(Clone)]
pub struct RateLimit(Option<Arc<DefaultKeyedRateLimiter<UserId>>>);

impl RateLimit {
    /// `per_second` requests per user, with bursts of twice that; 0 turns limiting off.
    pub fn per_second(per_second: u32) -> Self {
        Self(NonZeroU32::new(per_second).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not 0"));
            Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        }))
    }

    /// Takes one token for `user`, or says when to retry.
    pub fn check(&self, user: &UserId) -> Result<(), Problem> {
        let Some(limiter) = &self.0 else {
            return Ok(());
        };
        limiter.check_key(user).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests; slow down and retry after the given delay",
            );
            problem.retry_after = Some(wait.as_secs().max(1));
            problem
        })
    }

    /// Forgets users whose buckets are full again, so memory follows active users only.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.0 {
            limiter.retain_recent();
        }
    }
}

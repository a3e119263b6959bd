//! Throttling of failed logins, per username and per client address: token buckets that only failures drain, so
//! password guessing slows to a trickle while a user who types their password right is never held up. Past the
//! limit, 429 with `Retry-After`, before any password hashing is spent.

use super::problem::Problem;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked per bucket set; past it, full buckets are forgotten, and new keys go untracked if that is
/// not enough (the other set still applies), so memory stays bounded under a flood of made-up names.
const MAX_TRACKED: usize = 100_000;
/// Usernames are keyed by at most this many bytes (valid ones are shorter).
const MAX_KEY_BYTES: usize = 64;

/// Failed-login limits of the api.
pub struct LoginThrottle {
    by_username: Buckets<String>,
    by_address: Buckets<IpAddr>,
}

impl LoginThrottle {
    /// `per_user` failures per minute per username and `per_address` per client address, each with bursts of
    /// twice that; 0 turns a limit off.
    pub fn per_minute(per_user: u32, per_address: u32) -> Self {
        Self {
            by_username: Buckets::per_minute(per_user),
            by_address: Buckets::per_minute(per_address),
        }
    }

    /// 429 when the username or the address has no failure left to spend.
    pub fn check(&self, username: &str, address: Option<IpAddr>) -> Result<(), Problem> {
        let wait = [
            ("username", self.by_username.wait(&username_key(username))),
            ("address", address.and_then(|a| self.by_address.wait(&a))),
        ];
        let Some((scope, wait)) = wait
            .into_iter()
            .filter_map(|(scope, wait)| Some((scope, wait?)))
            .max_by_key(|(_, wait)| *wait)
        else {
            return Ok(());
        };
        throttled(scope).increment(1);
        let mut problem = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins; wait before trying again",
        );
        problem.retry_after = Some(wait.as_secs().max(1));
        Err(problem)
    }

    /// Spends one failure of the username and of the address.
    pub fn record_failure(&self, username: &str, address: Option<IpAddr>) {
        self.by_username.spend(username_key(username));
        if let Some(address) = address {
            self.by_address.spend(address);
        }
    }

    /// Forgets buckets that are full again, so memory follows recent failures only.
    pub fn forget_idle(&self) {
        self.by_username.forget_full();
        self.by_address.forget_full();
    }
}

fn throttled(scope: &'static str) -> metrics::Counter {
    metrics::counter!("login_attempts_throttled_total", "service" => "api", "scope" => scope)
}

/// Registers the throttling counter at zero for both scopes.
pub fn register_metrics() {
    for scope in ["username", "address"] {
        throttled(scope).absolute(0);
    }
}

fn username_key(username: &str) -> String {
    let mut end = username.len().min(MAX_KEY_BYTES);
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    username[..end].to_owned()
}

/// Token buckets per key; `None` when the limit is off.
struct Buckets<K>(Option<BucketSet<K>>);

struct BucketSet<K> {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq> Buckets<K> {
    fn per_minute(rate: u32) -> Self {
        Self((rate > 0).then(|| BucketSet {
            per_sec: f64::from(rate) / 60.0,
            burst: 2.0 * f64::from(rate),
            buckets: Mutex::default(),
        }))
    }

    /// How long until `key` may fail again; `None` when it may now.
    fn wait(&self, key: &K) -> Option<Duration> {
        let set = self.0.as_ref()?;
        let buckets = set.buckets.lock().expect("login throttle lock");
        let tokens = set.refilled(*buckets.get(key)?, Instant::now());
        (tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - tokens) / set.per_sec))
    }

    fn spend(&self, key: K) {
        let Some(set) = &self.0 else {
            return;
        };
        let now = Instant::now();
        let mut buckets = set.buckets.lock().expect("login throttle lock");
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&key) {
            buckets.retain(|_, b| set.refilled(*b, now) < set.burst);
            if buckets.len() >= MAX_TRACKED {
                return;
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: set.burst,
            at: now,
        });
        bucket.tokens = (set.refilled(*bucket, now) - 1.0).max(0.0);
        bucket.at = now;
    }

    fn forget_full(&self) {
        if let Some(set) = &self.0 {
            let now = Instant::now();
            set.buckets
                .lock()
                .expect("login throttle lock")
                .retain(|_, b| set.refilled(*b, now) < set.burst);
        }
    }
}

impl<K> BucketSet<K> {
    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_sec).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_limited_per_username_and_per_address() {
        let throttle = LoginThrottle::per_minute(1, 3);
        let home: Option<IpAddr> = Some([10, 0, 0, 1].into());
        assert!(throttle.check("alice", home).is_ok());
        throttle.record_failure("alice", home);
        throttle.record_failure("alice", home);
        let refused = throttle.check("alice", home).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.retry_after.unwrap() >= 1);
        assert!(
            throttle.check("alice", Some([10, 0, 0, 2].into())).is_err(),
            "the username is limited from any address"
        );
        assert!(throttle.check("bob", home).is_ok());
        for name in ["bob", "carol", "dave", "erin"] {
            throttle.record_failure(name, home);
        }
        assert!(
            throttle.check("frank", home).is_err(),
            "the address is limited for any username"
        );
        assert!(throttle.check("frank", Some([10, 0, 0, 2].into())).is_ok());
    }

    #[test]
    fn a_zero_limit_is_off() {
        let throttle = LoginThrottle::per_minute(0, 0);
        for _ in 0..100 {
            throttle.record_failure("alice", None);
        }
        assert!(throttle.check("alice", None).is_ok());
    }
}

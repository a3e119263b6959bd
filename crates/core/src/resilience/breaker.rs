//! A circuit breaker per channel: CLOSED → OPEN after N consecutive failures or a failure ratio over a sliding
//! window; OPEN for a cool-down, then HALF_OPEN letting one probe through: success → CLOSED, failure → OPEN.
//! While OPEN no call reaches the channel. Time is tokio's, so tests run it on a paused clock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// When the breaker trips and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Consecutive failures that open it.
    pub consecutive_failures: u32,
    /// Calls in the sliding window.
    pub window: usize,
    /// Failure share of a full window that opens it.
    pub failure_ratio: f64,
    /// How long it stays open before a probe.
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            window: 20,
            failure_ratio: 0.5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// Breaker state; the numbers are the `circuit_breaker_state` gauge values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed = 0,
    /// Calls are refused without reaching the channel.
    Open = 1,
    /// One probe call is allowed.
    HalfOpen = 2,
}

impl BreakerState {
    /// Every transition a breaker makes.
    pub const TRANSITIONS: [(Self, Self); 4] = [
        (Self::Closed, Self::Open),
        (Self::Open, Self::HalfOpen),
        (Self::HalfOpen, Self::Closed),
        (Self::HalfOpen, Self::Open),
    ];

    /// `CLOSED`, `OPEN` or `HALF_OPEN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "CLOSED",
            Self::Open => "OPEN",
            Self::HalfOpen => "HALF_OPEN",
        }
    }
}

/// A change of state, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerTransition {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
    /// Why.
    pub reason: String,
}

/// Permission to make one call; report its outcome with [`CircuitBreaker::record`].
#[derive(Debug)]
#[must_use = "report the call's outcome to the breaker"]
pub struct Permit {
    probe: bool,
}

struct Inner {
    state: BreakerState,
    consecutive: u32,
    recent: VecDeque<bool>,
    opened_at: Instant,
    probing: bool,
}

/// The breaker of one channel.
pub struct CircuitBreaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        let inner = Inner {
            state: BreakerState::Closed,
            consecutive: 0,
            recent: VecDeque::with_capacity(settings.window),
            opened_at: Instant::now(),
            probing: false,
        };
        Self {
            settings,
            inner: Mutex::new(inner),
        }
    }

    /// The current state (an OPEN breaker whose cool-down is over reports HALF_OPEN only once a call asks).
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A permit to call the channel, or `None` while the breaker refuses calls. Also returns the transition to
    /// HALF_OPEN when this call becomes the probe.
    pub fn try_acquire(&self) -> (Option<Permit>, Option<BreakerTransition>) {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => (Some(Permit { probe: false }), None),
            BreakerState::Open if inner.opened_at.elapsed() >= self.settings.cool_down => {
                inner.state = BreakerState::HalfOpen;
                inner.probing = true;
                let transition = BreakerTransition {
                    from: BreakerState::Open,
                    to: BreakerState::HalfOpen,
                    reason: format!(
                        "cool-down of {:?} over; letting one probe through",
                        self.settings.cool_down
                    ),
                };
                (Some(Permit { probe: true }), Some(transition))
            }
            BreakerState::HalfOpen if !inner.probing => {
                inner.probing = true;
                (Some(Permit { probe: true }), None)
            }
            _ => (None, None),
        }
    }

    /// Reports a call's outcome; returns the transition it caused, if any.
    pub fn record(&self, permit: Permit, success: bool) -> Option<BreakerTransition> {
        let mut inner = self.lock();
        if permit.probe {
            inner.probing = false;
            if inner.state != BreakerState::HalfOpen {
                return None;
            }
            return Some(if success {
                inner.state = BreakerState::Closed;
                inner.consecutive = 0;
                inner.recent.clear();
                BreakerTransition {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Closed,
                    reason: "probe succeeded".into(),
                }
            } else {
                inner.state = BreakerState::Open;
                inner.opened_at = Instant::now();
                BreakerTransition {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Open,
                    reason: "probe failed".into(),
                }
            });
        }
        if inner.state != BreakerState::Closed {
            return None; // a call that started before the breaker opened
        }
        inner.consecutive = if success { 0 } else { inner.consecutive + 1 };
        if inner.recent.len() == self.settings.window {
            inner.recent.pop_front();
        }
        inner.recent.push_back(success);
        let failures = inner.recent.iter().filter(|ok| !**ok).count();
        let ratio_tripped = inner.recent.len() == self.settings.window
            && failures as f64 >= self.settings.failure_ratio * self.settings.window as f64;
        let reason = if inner.consecutive >= self.settings.consecutive_failures {
            format!("{} consecutive failures", inner.consecutive)
        } else if ratio_tripped {
            format!(
                "{failures} failures in the last {} calls",
                self.settings.window
            )
        } else {
            return None;
        };
        inner.state = BreakerState::Open;
        inner.opened_at = Instant::now();
        Some(BreakerTransition {
            from: BreakerState::Closed,
            to: BreakerState::Open,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerSettings::default())
    }

    fn call(b: &CircuitBreaker, success: bool) -> Option<BreakerTransition> {
        let (permit, _) = b.try_acquire();
        b.record(permit.expect("a call is allowed"), success)
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_refuses_calls() {
        let b = breaker();
        for _ in 0..4 {
            assert_eq!(call(&b, false), None);
        }
        let opened = call(&b, false).expect("the fifth failure opens it");
        assert_eq!(
            (opened.from, opened.to),
            (BreakerState::Closed, BreakerState::Open)
        );
        assert!(b.try_acquire().0.is_none(), "no call while open");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(
            b.try_acquire().0.is_none(),
            "still open before the cool-down ends"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_one_probe_through() {
        let b = breaker();
        (0..5).for_each(|_| drop(call(&b, false)));
        tokio::time::advance(Duration::from_secs(30)).await;
        let (probe, transition) = b.try_acquire();
        assert_eq!(transition.map(|t| t.to), Some(BreakerState::HalfOpen));
        assert!(b.try_acquire().0.is_none(), "only one probe at a time");
        let closed = b.record(probe.unwrap(), true).unwrap();
        assert_eq!(
            (closed.from, closed.to),
            (BreakerState::HalfOpen, BreakerState::Closed)
        );
        assert!(b.try_acquire().0.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_another_cool_down() {
        let b = breaker();
        (0..5).for_each(|_| drop(call(&b, false)));
        tokio::time::advance(Duration::from_secs(30)).await;
        let (probe, _) = b.try_acquire();
        let reopened = b.record(probe.unwrap(), false).unwrap();
        assert_eq!(reopened.to, BreakerState::Open);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.try_acquire().0.is_none(), "the cool-down restarted");
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_the_failure_ratio_of_a_full_window() {
        let b = breaker();
        // Alternating outcomes never reach 5 in a row, but half of 20 calls fail.
        let mut transition = None;
        for i in 0..20 {
            transition = call(&b, i % 2 == 0).or(transition);
        }
        let opened = transition.expect("10 failures in 20 calls open it");
        assert!(
            opened.reason.contains("10 failures in the last 20 calls"),
            "{}",
            opened.reason
        );
        assert_eq!(b.state(), BreakerState::Open);
    }
}

//! Protecting channels and ourselves when things fail: circuit breakers and retry backoff.

mod backoff;
mod breaker;

pub use backoff::Backoff;
pub use breaker::{BreakerSettings, BreakerState, BreakerTransition, CircuitBreaker, Permit};

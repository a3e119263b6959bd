//! The connector's use case: deliver outbound messages through one channel, and survive the channel failing.
//!
//! Each partition is a lane. A conversation's messages wait in order in the lane; the head of each conversation
//! is tried when due, conversations in parallel. A retryable failure makes the message PENDING (once, with the
//! reason) and schedules a retry with exponential backoff and jitter; while the channel's circuit breaker is open
//! no call reaches the channel and heads simply wait. Waiting messages are parked in the log itself: the consumer
//! commits only up to the oldest message not yet settled, so a restart re-reads every parked message, in order.
//! Rejected, exhausted or expired messages fail and go to dead letters.
//!
//! Here: the settings, [`Delivery`] and its run loop (poll, park, try, commit). A lane's per-conversation queues
//! and its commit point are in `lane`; one round over the due heads, and how its outcomes are booked and
//! reported, in `round`; one try of one message through the circuit breaker, and what it comes to, in `attempt`.

mod attempt;
mod lane;
mod round;

use super::dead_letters::DeadLetters;
use crate::envelope::{correlation_of, decode};
use crate::events::{OutboundMessage, Topics};
use crate::ports::{Channel, EventLog, PartitionConsumer};
use crate::resilience::{Backoff, BreakerSettings, BreakerState, CircuitBreaker};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lane::{Lane, Parked};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How a connector delivers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliverySettings {
    /// The channel's circuit breaker.
    pub breaker: BreakerSettings,
    /// Delays between retries of one message.
    pub backoff: Backoff,
    /// Calls to the channel for one message before it fails as exhausted.
    pub max_attempts: u32,
    /// Most messages waiting in one lane; past it the lane stops reading (back-pressure), the rest stays in the log.
    pub max_parked: usize,
    /// Outbound pace, messages per second (excess waits).
    pub rate_per_sec: u32,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            breaker: BreakerSettings::default(),
            backoff: Backoff::default(),
            max_attempts: 10,
            max_parked: 10_000,
            rate_per_sec: 80,
        }
    }
}

/// Longest idle poll.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Delivers outbound messages through one channel.
#[derive(Clone)]
pub struct Delivery {
    channel: Arc<dyn Channel>,
    log: Arc<dyn EventLog>,
    topics: Topics,
    dead_letters: DeadLetters,
    breaker: Arc<CircuitBreaker>,
    pace: Arc<DefaultDirectRateLimiter>,
    pending: Arc<AtomicI64>,
    settled: Arc<AtomicU64>,
    settings: DeliverySettings,
}

impl Delivery {
    /// Registers this connector's series at zero (see `Router::register_metrics`).
    pub fn register_metrics(&self) {
        let channel = self.channel.name().to_owned();
        for status in ["DELIVERED", "FAILED"] {
            metrics::counter!("messages_sent_total", "service" => "connector", "channel" => channel.clone(), "status" => status).absolute(0);
        }
        metrics::counter!("messages_dead_lettered_total", "service" => "connector", "channel" => channel.clone()).absolute(0);
        let _ = metrics::histogram!("connector_api_duration_seconds", "service" => "connector", "channel" => channel.clone());
        for (from, to) in crate::resilience::BreakerState::TRANSITIONS {
            metrics::counter!("circuit_breaker_transitions_total", "service" => "connector", "channel" => channel.clone(), "from" => from.as_str(), "to" => to.as_str())
                .absolute(0);
        }
    }

    /// Delivery through `channel`, reporting on `log`.
    pub fn new(
        channel: Arc<dyn Channel>,
        log: Arc<dyn EventLog>,
        topics: Topics,
        settings: DeliverySettings,
    ) -> Self {
        let dead_letters = DeadLetters::new(log.clone(), topics.clone());
        let rate = NonZeroU32::new(settings.rate_per_sec.max(1)).expect("at least 1");
        Self {
            channel,
            log,
            topics,
            dead_letters,
            breaker: Arc::new(CircuitBreaker::new(settings.breaker)),
            pace: Arc::new(RateLimiter::direct(Quota::per_second(rate))),
            pending: Arc::new(AtomicI64::new(0)),
            settled: Arc::new(AtomicU64::new(0)),
            settings,
        }
    }

    /// The channel served.
    pub fn channel_name(&self) -> &str {
        self.channel.name()
    }

    /// The channel's circuit breaker state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Messages settled (delivered or failed for good) since start, for heartbeats.
    pub fn settled(&self) -> Arc<AtomicU64> {
        self.settled.clone()
    }

    /// Messages of this channel waiting as PENDING in this process.
    pub fn pending(&self) -> i64 {
        self.pending.load(Ordering::Relaxed)
    }

    fn show_pending(&self) {
        metrics::gauge!("messages_pending", "service" => "connector", "channel" => self.channel.name().to_owned())
            .set(self.pending() as f64);
    }

    /// Delivers one partition until `stop` resolves, committing as messages settle.
    pub async fn run(&self, consumer: Box<dyn PartitionConsumer>, stop: impl Future<Output = ()>) {
        let mut lane = Lane::default();
        self.deliver(&mut lane, consumer, stop).await;
        // The partition's next owner (or this process after a restart) re-reads what is left: it no longer
        // waits here.
        self.pending
            .fetch_sub(lane.announced_pending() as i64, Ordering::Relaxed);
        self.show_pending();
    }

    async fn deliver(
        &self,
        lane: &mut Lane,
        mut consumer: Box<dyn PartitionConsumer>,
        stop: impl Future<Output = ()>,
    ) {
        let topic = self.topics.outbound(self.channel.name());
        tokio::pin!(stop);
        loop {
            let wait = lane.next_due().map_or(IDLE_POLL, |due| {
                due.saturating_duration_since(Instant::now()).min(IDLE_POLL)
            });
            let polled = if lane.len() < self.settings.max_parked {
                tokio::select! {
                    () = &mut stop => break,
                    polled = consumer.poll(512, wait) => polled,
                }
            } else {
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(wait) => Ok(Vec::new()),
                }
            };
            match polled {
                Ok(records) => {
                    for record in records {
                        lane.read_up_to = Some(record.offset);
                        match decode::<OutboundMessage>(&record) {
                            Ok(message) => lane.push(Parked {
                                correlation_id: correlation_of(&record),
                                record,
                                message,
                                attempts: 0,
                                due: Instant::now(),
                                announced_pending: false,
                            }),
                            Err(e) => {
                                let reason = e.to_string();
                                if self
                                    .retrying(
                                        || self.dead_letters.park(&topic, &record, &reason),
                                        &mut stop,
                                    )
                                    .await
                                    .is_none()
                                {
                                    return;
                                }
                                metrics::counter!("messages_dead_lettered_total", "service" => "connector", "channel" => self.channel.name().to_owned()).increment(1);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(channel = self.channel.name(), error = %e, "poll failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            if !self.try_due(lane, &topic, &mut stop).await {
                return;
            }
            if let Some(point) = lane.commit_point() {
                match consumer.commit(point).await {
                    Ok(()) => lane.committed = Some(point),
                    Err(e) => {
                        tracing::error!(channel = self.channel.name(), error = %e, "commit failed; will retry")
                    }
                }
            }
        }
    }

    /// Runs a log write until it succeeds (a lost status would leave a message stuck); `None` on shutdown.
    async fn retrying<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
        &self,
        write: impl Fn() -> F,
        stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Option<T> {
        let mut delay = Duration::from_millis(100);
        loop {
            match write().await {
                Ok(value) => return Some(value),
                Err(e) => {
                    tracing::error!(channel = self.channel.name(), error = %e, "log write failed; retrying")
                }
            }
            tokio::select! {
                () = stop.as_mut() => return None,
                () = tokio::time::sleep(delay) => delay = (delay * 2).min(Duration::from_secs(5)),
            }
        }
    }
}

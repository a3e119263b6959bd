//! One try of one message and what it comes to ([`Outcome`]): an expired message fails; otherwise the call goes
//! through the channel's circuit breaker (an open breaker means wait, without calling) and the outbound pace, and
//! its answer decides: delivered, rejected for good, retries exhausted (all settled, the failures with a
//! dead-letter reason), or try again after a backoff, reported PENDING the first time.

use super::Delivery;
use super::lane::Parked;
use crate::events::StatusUpdate;
use crate::ports::ChannelError;
use crate::resilience::BreakerTransition;
use crate::status::MessageStatus;
use crate::time::now_millis;
use std::time::Duration;
use tokio::time::Instant;

/// How often waiting heads look again while the breaker refuses calls.
const BREAKER_RECHECK: Duration = Duration::from_millis(250);

/// What one try of a lane's head came to.
pub(super) enum Outcome {
    /// Settled: delivered, or failed for good (with the dead-letter reason).
    Settled(StatusUpdate, Option<String>),
    /// Try again at `due`; `pending` is the PENDING update to report the first time.
    Later {
        pending: Option<StatusUpdate>,
        due: Instant,
        attempted: bool,
    },
}

impl Delivery {
    /// One try of one message.
    pub(super) async fn attempt(&self, parked: &Parked) -> Outcome {
        let message = &parked.message;
        let pending = |reason: String| {
            (!parked.announced_pending).then(|| {
                StatusUpdate::now(
                    message.message_id.clone(),
                    MessageStatus::Pending,
                    Some(reason),
                )
            })
        };
        if message
            .expires_at
            .is_some_and(|expires| now_millis() > expires)
        {
            let update = StatusUpdate::now(
                message.message_id.clone(),
                MessageStatus::Failed,
                Some("expired: not delivered within its validity period".into()),
            );
            return Outcome::Settled(update, Some("expired".into()));
        }
        let (permit, opened) = self.breaker.try_acquire();
        self.observe(opened);
        let Some(permit) = permit else {
            let reason = format!(
                "{} is unavailable (circuit breaker open); the message will be delivered when it returns",
                self.channel.name()
            );
            return Outcome::Later {
                pending: pending(reason),
                due: Instant::now() + BREAKER_RECHECK,
                attempted: false,
            };
        };
        self.pace.until_ready().await;
        let started = std::time::Instant::now();
        let result = self.channel.send(message).await;
        let elapsed = started.elapsed();
        metrics::histogram!("connector_api_duration_seconds", "service" => "connector", "channel" => self.channel.name().to_owned()).record(elapsed.as_secs_f64());
        // A rejected message says nothing about the channel's health.
        self.observe(
            self.breaker
                .record(permit, !matches!(result, Err(ref e) if e.is_retryable())),
        );
        tracing::info!(
            correlation_id = %parked.correlation_id,
            message_id = %message.message_id,
            conversation_id = %message.conversation_id,
            channel = self.channel.name(),
            attempt = parked.attempts + 1,
            outcome = match &result { Ok(_) => "delivered".to_owned(), Err(e) => e.to_string() },
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "channel call"
        );
        let failed = |detail: String| {
            StatusUpdate::now(
                message.message_id.clone(),
                MessageStatus::Failed,
                Some(detail),
            )
        };
        match result {
            Ok(receipt) => Outcome::Settled(
                StatusUpdate::now(
                    message.message_id.clone(),
                    MessageStatus::Delivered,
                    Some(format!(
                        "{} accepted it as {}",
                        self.channel.name(),
                        receipt.channel_message_id
                    )),
                ),
                None,
            ),
            Err(ChannelError::Rejected(reason)) => Outcome::Settled(
                failed(format!("rejected by {}: {reason}", self.channel.name())),
                Some(format!("rejected: {reason}")),
            ),
            Err(error) if parked.attempts + 1 >= self.settings.max_attempts => {
                let detail = format!(
                    "retries exhausted after {} attempts: {error}",
                    parked.attempts + 1
                );
                Outcome::Settled(failed(detail.clone()), Some(detail))
            }
            Err(error) => Outcome::Later {
                pending: pending(format!("{error}; retrying")),
                due: Instant::now() + self.settings.backoff.delay(parked.attempts),
                attempted: true,
            },
        }
    }

    /// Logs and counts a breaker transition.
    fn observe(&self, transition: Option<BreakerTransition>) {
        let Some(t) = transition else { return };
        let channel = self.channel.name().to_owned();
        tracing::warn!(
            event = "circuit_breaker_transition",
            channel,
            from = t.from.as_str(),
            to = t.to.as_str(),
            reason = t.reason,
            "circuit breaker {} -> {}",
            t.from.as_str(),
            t.to.as_str()
        );
        metrics::counter!("circuit_breaker_transitions_total", "service" => "connector", "channel" => channel.clone(), "from" => t.from.as_str(), "to" => t.to.as_str())
            .increment(1);
        metrics::gauge!("circuit_breaker_state", "service" => "connector", "channel" => channel)
            .set(t.to as i32 as f64);
    }
}

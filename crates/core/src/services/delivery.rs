//! The connector's use case: deliver outbound messages through one channel, and survive the channel failing.
//!
//! Each partition is a lane. A conversation's messages wait in order in the lane; the head of each conversation
//! is tried when due, conversations in parallel. A retryable failure makes the message PENDING (once, with the
//! reason) and schedules a retry with exponential backoff and jitter; while the channel's circuit breaker is open
//! no call reaches the channel and heads simply wait. Waiting messages are parked in the log itself: the consumer
//! commits only up to the oldest message not yet settled, so a restart re-reads every parked message, in order.
//! Rejected, exhausted or expired messages fail and go to dead letters.

use super::dead_letters::DeadLetters;
use crate::envelope::{correlation_of, decode, encode};
use crate::events::{OutboundMessage, StatusUpdate, Topics};
use crate::ids::{ConversationId, CorrelationId};
use crate::ports::{Channel, ChannelError, EventLog, OutgoingRecord, PartitionConsumer, Record};
use crate::resilience::{
    Backoff, BreakerSettings, BreakerState, BreakerTransition, CircuitBreaker,
};
use crate::status::MessageStatus;
use crate::time::now_millis;
use futures::future::join_all;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::{BTreeSet, HashMap, VecDeque};
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

/// How often waiting heads look again while the breaker refuses calls.
const BREAKER_RECHECK: Duration = Duration::from_millis(250);
/// Most messages of one conversation tried in one round, one after another.
const RUN: usize = 64;
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

/// A message waiting in a lane.
struct Parked {
    record: Record,
    message: OutboundMessage,
    correlation_id: CorrelationId,
    attempts: u32,
    due: Instant,
    announced_pending: bool,
}

/// What one try of a lane's head came to.
enum Outcome {
    /// Settled: delivered, or failed for good (with the dead-letter reason).
    Settled(StatusUpdate, Option<String>),
    /// Try again at `due`; `pending` is the PENDING update to report the first time.
    Later {
        pending: Option<StatusUpdate>,
        due: Instant,
        attempted: bool,
    },
}

/// One partition's waiting messages: per conversation, in offset order.
#[derive(Default)]
struct Lane {
    conversations: HashMap<ConversationId, VecDeque<Parked>>,
    unsettled: BTreeSet<u64>,
    read_up_to: Option<u64>,
    committed: Option<u64>,
}

impl Lane {
    fn len(&self) -> usize {
        self.unsettled.len()
    }

    fn push(&mut self, parked: Parked) {
        self.unsettled.insert(parked.record.offset);
        self.conversations
            .entry(parked.message.conversation_id.clone())
            .or_default()
            .push_back(parked);
    }

    /// Removes and returns the heads that are due.
    /// For each conversation whose head is due: the head and up to `run - 1` messages behind it, in order.
    fn take_due(&mut self, now: Instant, run: usize) -> Vec<VecDeque<Parked>> {
        let mut due = Vec::new();
        for queue in self.conversations.values_mut() {
            if queue.front().is_some_and(|head| head.due <= now) {
                due.push(queue.drain(..run.min(queue.len())).collect());
            }
        }
        self.conversations.retain(|_, queue| !queue.is_empty());
        due
    }

    /// Puts a head back in front of its conversation.
    fn put_back(&mut self, parked: Parked) {
        self.conversations
            .entry(parked.message.conversation_id.clone())
            .or_default()
            .push_front(parked);
    }

    /// Messages queued behind a PENDING head wait too: marks them and returns them, to be reported PENDING.
    fn waiting_behind_pending(&mut self) -> Vec<(&OutboundMessage, &CorrelationId)> {
        let mut waiting = Vec::new();
        for queue in self.conversations.values_mut() {
            if queue.front().is_some_and(|head| head.announced_pending) {
                for parked in queue.iter_mut().skip(1).filter(|p| !p.announced_pending) {
                    parked.announced_pending = true;
                    waiting.push((&parked.message, &parked.correlation_id));
                }
            }
        }
        waiting
    }

    /// Messages reported PENDING and still waiting here.
    fn announced_pending(&self) -> usize {
        self.conversations
            .values()
            .flatten()
            .filter(|p| p.announced_pending)
            .count()
    }

    fn settle(&mut self, offset: u64) {
        self.unsettled.remove(&offset);
    }

    fn next_due(&self) -> Option<Instant> {
        self.conversations
            .values()
            .filter_map(|q| q.front().map(|h| h.due))
            .min()
    }

    /// The offset every record before which is settled, if it moved since the last commit.
    fn commit_point(&self) -> Option<u64> {
        let point = self
            .unsettled
            .first()
            .copied()
            .or(self.read_up_to.map(|o| o + 1))?;
        (Some(point) > self.committed).then_some(point)
    }
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

    /// Tries every due head once; false when shutdown interrupted writing the outcomes.
    async fn try_due(
        &self,
        lane: &mut Lane,
        topic: &str,
        stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        // Conversations in parallel; within one, messages one after another until one has to wait.
        let runs = join_all(lane.take_due(Instant::now(), RUN).into_iter().map(
            |mut queue| async move {
                let mut tried = Vec::with_capacity(queue.len());
                while let Some(parked) = queue.pop_front() {
                    let outcome = self.attempt(&parked).await;
                    let wait = matches!(outcome, Outcome::Later { .. });
                    tried.push((parked, outcome));
                    if wait {
                        break;
                    }
                }
                (tried, queue)
            },
        ))
        .await;
        let mut reports: Vec<OutgoingRecord> = Vec::new();
        let mut dead: Vec<(Record, String)> = Vec::new();
        let mut settled = Vec::new();
        for (tried, rest) in runs {
            // Messages not reached go back first, so that a head that has to wait lands in front of them.
            for parked in rest.into_iter().rev() {
                lane.put_back(parked);
            }
            for item in tried {
                self.account(item, lane, &mut reports, &mut dead, &mut settled);
            }
        }
        for (message, correlation_id) in lane.waiting_behind_pending() {
            let reason = format!(
                "waiting behind an earlier message of its conversation that {} has not taken yet",
                self.channel.name()
            );
            let update = StatusUpdate::now(
                message.message_id.clone(),
                MessageStatus::Pending,
                Some(reason),
            );
            self.pending.fetch_add(1, Ordering::Relaxed);
            reports.push(encode(&update, correlation_id));
        }
        self.show_pending();
        for (record, reason) in &dead {
            if self
                .retrying(|| self.dead_letters.park(topic, record, reason), stop)
                .await
                .is_none()
            {
                return false;
            }
            metrics::counter!("messages_dead_lettered_total", "service" => "connector", "channel" => self.channel.name().to_owned()).increment(1);
        }
        if !reports.is_empty() {
            let status_topic = &self.topics.status_updates;
            if self
                .retrying(
                    || self.log.append_batch(status_topic, reports.clone()),
                    stop,
                )
                .await
                .is_none()
            {
                return false;
            }
        }
        for offset in settled {
            lane.settle(offset);
        }
        true
    }

    /// Books one tried message: its report, its dead letter, and whether it settled or waits in the lane again.
    fn account(
        &self,
        (mut parked, outcome): (Parked, Outcome),
        lane: &mut Lane,
        reports: &mut Vec<OutgoingRecord>,
        dead: &mut Vec<(Record, String)>,
        settled: &mut Vec<u64>,
    ) {
        match outcome {
            Outcome::Settled(update, dead_letter) => {
                if parked.announced_pending {
                    self.pending.fetch_sub(1, Ordering::Relaxed);
                }
                let status = if update.status == MessageStatus::Delivered {
                    "DELIVERED"
                } else {
                    "FAILED"
                };
                metrics::counter!("messages_sent_total", "service" => "connector", "channel" => self.channel.name().to_owned(), "status" => status)
                    .increment(1);
                reports.push(encode(&update, &parked.correlation_id));
                if let Some(reason) = dead_letter {
                    dead.push((parked.record.clone(), reason));
                }
                settled.push(parked.record.offset);
                self.settled.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Later {
                pending,
                due,
                attempted,
            } => {
                if let Some(update) = pending {
                    parked.announced_pending = true;
                    self.pending.fetch_add(1, Ordering::Relaxed);
                    reports.push(encode(&update, &parked.correlation_id));
                }
                parked.attempts += u32::from(attempted);
                parked.due = due;
                lane.put_back(parked);
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

    /// One try of one message.
    async fn attempt(&self, parked: &Parked) -> Outcome {
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

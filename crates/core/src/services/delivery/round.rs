//! One round of a lane: every due head is tried, conversations in parallel and the messages of one conversation
//! one after another until one has to wait; then the outcomes are booked (status reports, PENDING counts, dead
//! letters, settled offsets), the reports and dead letters are written, and only then are offsets settled, so
//! that the commit point never passes a message whose outcome is not in the log.

use super::Delivery;
use super::attempt::Outcome;
use super::lane::{Lane, Parked};
use crate::envelope::encode;
use crate::events::StatusUpdate;
use crate::ports::{OutgoingRecord, Record};
use crate::status::MessageStatus;
use futures::future::join_all;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

/// Most messages of one conversation tried in one round, one after another.
const RUN: usize = 64;
/// How long a round goes on trying the messages behind a conversation's head. A round's outcomes (statuses,
/// offsets) are written only when it ends, so under a backlog paced by the channel, an unbounded run (64 calls of
/// 200–500 ms) held back every status it reached for half a minute.
const ROUND_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

impl Delivery {
    /// Tries every due head once; false when shutdown interrupted writing the outcomes.
    pub(super) async fn try_due(
        &self,
        lane: &mut Lane,
        topic: &str,
        stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        // Conversations in parallel; within one, messages one after another until one has to wait or the round's
        // time is up.
        let began = Instant::now();
        let runs = join_all(
            lane.take_due(began, RUN)
                .into_iter()
                .map(|mut queue| async move {
                    let mut tried = Vec::with_capacity(queue.len());
                    while let Some(parked) = queue.pop_front() {
                        let outcome = self.attempt(&parked).await;
                        let wait = matches!(outcome, Outcome::Later { .. });
                        tried.push((parked, outcome));
                        if wait || began.elapsed() >= ROUND_BUDGET {
                            break;
                        }
                    }
                    (tried, queue)
                }),
        )
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
}

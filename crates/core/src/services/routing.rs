//! The router's use cases: store accepted messages in order, route them, and apply status updates.

use super::changes::{Changes, Notifications};
use super::dead_letters::DeadLetters;
use crate::envelope::{correlation_of, decode, encode};
use crate::error::ServiceError;
use crate::events::{ChannelAddress, MessageAccepted, StatusUpdate, Topics};
use crate::ids::{CorrelationId, MessageId, UserId};
use crate::model::{Message, Transition};
use crate::ports::{EventLog, OutgoingRecord, Record, Stores};
use crate::recipient::{KNOWN_CHANNELS, Recipient};
use crate::status::MessageStatus;
use route::{Route, Users, decide, outbound_event};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

mod route;

/// What a batch of records turned into, for metrics and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Messages stored for the first time (or still waiting to be routed).
    pub routed: usize,
    /// Messages handed to a channel connector.
    pub outbound: usize,
    /// Status changes applied.
    pub applied: usize,
    /// Status changes refused by the forward-only rule (late or repeated).
    pub refused: usize,
    /// Records that could not be decoded and went to dead letters.
    pub dead_lettered: usize,
}

/// Routes messages and applies status updates.
#[derive(Clone)]
pub struct Router {
    stores: Stores,
    log: Arc<dyn EventLog>,
    changes: Changes,
    topics: Topics,
    channels: HashSet<String>,
    dead_letters: DeadLetters,
}

impl Router {
    /// Registers the router's series at zero, so that dashboards and alerts read 0, not "no data", before the
    /// first message.
    pub fn register_metrics() {
        for reason in ["unknown_recipient", "unknown_channel", "invalid_recipient"] {
            metrics::counter!("messages_failed_total", "service" => "router", "reason" => reason)
                .absolute(0);
        }
        for status in ["ROUTED", "PENDING", "DELIVERED", "READ", "FAILED"] {
            metrics::counter!("messages_processed_total", "service" => "router", "status" => status).absolute(0);
        }
        for channel in KNOWN_CHANNELS {
            for identity in ["preferred", "requested"] {
                metrics::counter!("messages_routed_via_identity_total", "service" => "router", "channel" => channel, "identity" => identity)
                    .absolute(0);
            }
        }
    }

    /// A router that hands messages for `channels` to their outbound topics and fails messages for any other.
    pub fn new(
        stores: &Stores,
        log: Arc<dyn EventLog>,
        topics: Topics,
        channels: impl IntoIterator<Item = String>,
    ) -> Self {
        let dead_letters = DeadLetters::new(log.clone(), topics.clone());
        Self {
            changes: Changes::new(stores, log.clone(), topics.clone()),
            stores: stores.clone(),
            log,
            topics,
            channels: channels.into_iter().collect(),
            dead_letters,
        }
    }

    /// Stores a batch of accepted messages (idempotently, assigning `seq`) and routes every one not yet routed.
    /// Returns once all resulting writes are durable, so the caller may commit the batch.
    pub async fn route_messages(&self, records: &[Record]) -> Result<BatchOutcome, ServiceError> {
        let mut outcome = BatchOutcome::default();
        let mut accepted = Vec::with_capacity(records.len());
        let mut correlations = Vec::with_capacity(records.len());
        for record in records {
            match decode::<MessageAccepted>(record) {
                Ok(event) => {
                    accepted.push(event);
                    correlations.push(correlation_of(record));
                }
                Err(e) => {
                    self.dead_letters
                        .park(&self.topics.messages, record, &e.to_string())
                        .await?;
                    outcome.dead_lettered += 1;
                }
            }
        }
        if accepted.is_empty() {
            return Ok(outcome);
        }
        let users = self.recipients(&accepted).await?;
        let routes: Vec<Route> = accepted
            .iter()
            .map(|a| {
                decide(
                    a.recipient_id.as_deref(),
                    a.via.as_ref(),
                    &users,
                    &self.channels,
                )
            })
            .collect();
        // A message the router settles by itself is settled as it is stored: one store transaction for both. One
        // also handed to a channel is settled only once the hand-off is appended, so that a crash in between
        // leaves it SENT, to be routed again.
        let settles = accepted
            .iter()
            .zip(&routes)
            .zip(&correlations)
            .filter_map(|((a, route), correlation_id)| {
                let (status, detail) = match route {
                    Route::Deliver(detail) => (MessageStatus::Delivered, detail),
                    Route::Fail(_, detail) => (MessageStatus::Failed, detail),
                    Route::Channel(_) | Route::AppAndChannel(..) => return None,
                };
                let update = settling(&a.message_id, status, detail, correlation_id);
                Some((a.message_id.clone(), update))
            })
            .collect();
        let mut notifications = Notifications::default();
        let recordings = self
            .changes
            .record(&accepted, &correlations, settles, &mut notifications)
            .await?;

        let mut statuses = Vec::new();
        let mut unsettled = Vec::new();
        let mut outbound: BTreeMap<String, Vec<OutgoingRecord>> = BTreeMap::new();
        for (((recording, route), correlation_id), accepted) in recordings
            .into_iter()
            .zip(routes)
            .zip(&correlations)
            .zip(&accepted)
        {
            let message = &recording.stored;
            if message.status != MessageStatus::Sent {
                continue; // routed before: this is a replay
            }
            outcome.routed += 1;
            let (settled, hand_off) = match route {
                Route::Deliver(detail) => (Some((MessageStatus::Delivered, detail)), None),
                Route::Fail(reason, detail) => {
                    metrics::counter!("messages_failed_total", "service" => "router", "reason" => reason)
                        .increment(1);
                    (Some((MessageStatus::Failed, detail)), None)
                }
                Route::Channel(to) => (None, Some(to)),
                Route::AppAndChannel(detail, to) => {
                    (Some((MessageStatus::Delivered, detail)), Some(to))
                }
            };
            if let Some(to) = hand_off {
                let through = match (&settled, &accepted.via) {
                    (Some(_), _) => Some("preferred"),
                    (None, Some(_)) => Some("requested"),
                    (None, None) => None,
                };
                if let Some(through) = through {
                    metrics::counter!("messages_routed_via_identity_total", "service" => "router", "channel" => to.channel.clone(), "identity" => through).increment(1);
                }
                tracing::info!(
                    correlation_id = %correlation_id,
                    message_id = %message.message_id,
                    conversation_id = %message.conversation_id,
                    seq = message.seq,
                    channel = to.channel,
                    identity = through,
                    "message stored and handed to its channel"
                );
                outbound
                    .entry(self.topics.outbound(&to.channel))
                    .or_default()
                    .push(encode(
                        &outbound_event(message, to, accepted.expires_at),
                        correlation_id,
                    ));
                outcome.outbound += 1;
                metrics::counter!("messages_processed_total", "service" => "router", "status" => "ROUTED").increment(1);
            }
            let Some((status, detail)) = settled else {
                continue;
            };
            tracing::info!(
                correlation_id = %correlation_id,
                message_id = %message.message_id,
                conversation_id = %message.conversation_id,
                seq = message.seq,
                status = %status,
                "message stored and routed"
            );
            match recording.settled {
                Some(now) => count(&Transition::Applied(now), &mut outcome),
                None => {
                    statuses.push(settling(
                        &message.message_id,
                        status,
                        &detail,
                        correlation_id,
                    ));
                    unsettled.push(recording.stored);
                }
            }
        }
        for (topic, records) in outbound {
            self.log.append_batch(&topic, records).await?;
        }
        self.apply(&statuses, unsettled, notifications, &mut outcome)
            .await?;
        Ok(outcome)
    }

    /// Applies a batch of status-update records; undecodable ones go to dead letters.
    pub async fn apply_status_updates(
        &self,
        records: &[Record],
    ) -> Result<BatchOutcome, ServiceError> {
        let mut outcome = BatchOutcome::default();
        let mut updates = Vec::with_capacity(records.len());
        for record in records {
            match decode::<StatusUpdate>(record) {
                Ok(mut update) => {
                    update.correlation_id = Some(correlation_of(record));
                    tracing::info!(correlation_id = %correlation_of(record), message_id = %update.message_id, status = %update.status, "status update received");
                    updates.push(update);
                }
                Err(e) => {
                    self.dead_letters
                        .park(&self.topics.status_updates, record, &e.to_string())
                        .await?;
                    outcome.dead_lettered += 1;
                }
            }
        }
        self.apply(&updates, [], Notifications::default(), &mut outcome)
            .await?;
        Ok(outcome)
    }

    /// Applies `updates` (`known` holds messages the batch just stored), then publishes every notification.
    async fn apply(
        &self,
        updates: &[StatusUpdate],
        known: impl IntoIterator<Item = Message>,
        mut notifications: Notifications,
        outcome: &mut BatchOutcome,
    ) -> Result<(), ServiceError> {
        let transitions = self
            .changes
            .apply(updates, known, &mut notifications)
            .await?;
        self.changes.publish(notifications).await?;
        for transition in &transitions {
            count(transition, outcome);
        }
        Ok(())
    }

    /// The user recipients of `accepted` that exist, with their preferred identities: one store query each.
    async fn recipients(&self, accepted: &[MessageAccepted]) -> Result<Users, ServiceError> {
        let users: Vec<UserId> = accepted
            .iter()
            .filter(|a| a.via.is_none())
            .filter_map(|a| match Recipient::parse(a.recipient_id.as_deref()) {
                Ok(Recipient::User(user)) => Some(user),
                _ => None,
            })
            .collect();
        if users.is_empty() {
            return Ok(Users::default());
        }
        let known = self.stores.accounts.existing_users(&users).await?;
        let preferred = self
            .stores
            .identities
            .preferred_identities(&known)
            .await?
            .into_iter()
            .map(|i| {
                let to = ChannelAddress {
                    channel: i.platform,
                    address: i.value,
                };
                (i.user_id, to)
            })
            .collect();
        Ok(Users {
            known: known.into_iter().collect(),
            preferred,
        })
    }
}

/// The update by which the router settles a message.
fn settling(
    message_id: &MessageId,
    status: MessageStatus,
    detail: &str,
    correlation_id: &CorrelationId,
) -> StatusUpdate {
    StatusUpdate {
        correlation_id: Some(correlation_id.clone()),
        ..StatusUpdate::now(message_id.clone(), status, Some(detail.to_owned()))
    }
}

/// Counts a status change in the batch's outcome and the router's metrics.
fn count(transition: &Transition, outcome: &mut BatchOutcome) {
    match transition {
        Transition::Applied(message) => {
            outcome.applied += 1;
            metrics::counter!("messages_processed_total", "service" => "router", "status" => message.status.as_str())
                .increment(1);
        }
        _ => outcome.refused += 1,
    }
}

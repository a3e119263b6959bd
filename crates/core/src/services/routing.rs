//! The router's use cases: store accepted messages in order, route them, and apply status updates.

use super::changes::{Changes, Notifications};
use super::dead_letters::DeadLetters;
use crate::envelope::{correlation_of, decode, encode};
use crate::error::ServiceError;
use crate::events::{ChannelAddress, MessageAccepted, StatusUpdate, Topics};
use crate::ids::{CorrelationId, UserId};
use crate::model::Message;
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
        let mut notifications = Notifications::default();
        let stored = self
            .changes
            .record(&accepted, &correlations, &mut notifications)
            .await?;
        // Messages still SENT (new, or stored before a crash but not routed), with their request's context.
        let waiting: Vec<(&Message, &CorrelationId, &MessageAccepted)> = stored
            .iter()
            .zip(&correlations)
            .zip(&accepted)
            .filter(|((m, _), _)| m.status == MessageStatus::Sent)
            .map(|((m, c), a)| (m, c, a))
            .collect();
        let users = self.recipients(&waiting).await?;

        let mut statuses = Vec::new();
        let mut outbound: BTreeMap<String, Vec<OutgoingRecord>> = BTreeMap::new();
        for (message, correlation_id, accepted) in waiting {
            outcome.routed += 1;
            let route = decide(
                message.recipient_id.as_deref(),
                accepted.via.as_ref(),
                &users,
                &self.channels,
            );
            let (settled, hand_off) = match route {
                Route::Settle(status, detail) => (Some((status, detail)), None),
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
            statuses.push(StatusUpdate {
                correlation_id: Some(correlation_id.clone()),
                ..StatusUpdate::now(message.message_id.clone(), status, Some(detail))
            });
        }
        for (topic, records) in outbound {
            self.log.append_batch(&topic, records).await?;
        }
        let routed_now = stored
            .iter()
            .filter(|m| m.status == MessageStatus::Sent)
            .cloned();
        self.apply(&statuses, routed_now, notifications, &mut outcome)
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
        for transition in transitions {
            match transition {
                crate::model::Transition::Applied(message) => {
                    outcome.applied += 1;
                    metrics::counter!("messages_processed_total", "service" => "router", "status" => message.status.as_str())
                        .increment(1);
                }
                _ => outcome.refused += 1,
            }
        }
        Ok(())
    }

    /// The user recipients among `waiting` that exist, with their preferred identities: one store query each.
    async fn recipients(
        &self,
        waiting: &[(&Message, &CorrelationId, &MessageAccepted)],
    ) -> Result<Users, ServiceError> {
        let users: Vec<UserId> = waiting
            .iter()
            .filter(|(_, _, accepted)| accepted.via.is_none())
            .filter_map(
                |(m, _, _)| match Recipient::parse(m.recipient_id.as_deref()) {
                    Ok(Recipient::User(user)) => Some(user),
                    _ => None,
                },
            )
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

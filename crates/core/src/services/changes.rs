//! The one path by which messages enter history and change status. Whoever causes a change — the router storing
//! and routing, a connector's report, a reader marking READ, an operator's replay — goes through here: the
//! forward-only state machine and the status timestamps are decided once, the store only saves them, and every
//! change actually applied is published on the notifications topic ([`MessageStored`],
//! [`MessageStatusChanged`]), the single stream that real-time readers fan out.
//!
//! Publication follows the store's commit: a crash between the two loses the notification, never the change,
//! and a reader that reconnects catches up from history.

use crate::envelope::encode;
use crate::error::ServiceError;
use crate::events::{MessageAccepted, MessageStatusChanged, MessageStored, StatusUpdate, Topics};
use crate::ids::{ConversationId, CorrelationId, MessageId, UserId};
use crate::model::{Conversation, ConversationKind, Message, StatusChange, Transition};
use crate::ports::{EventLog, OutgoingRecord, Recorded, Settle, StatusWrite, Stores};
use crate::status::MessageStatus;
use std::collections::HashMap;
use std::sync::Arc;

/// Rounds of a status batch before giving up on writers that keep racing on the same messages.
const MAX_ROUNDS: usize = 5;

/// Stores messages and applies status changes, publishing what was applied.
#[derive(Clone)]
pub struct Changes {
    stores: Stores,
    log: Arc<dyn EventLog>,
    topics: Topics,
}

/// Notifications of applied changes, to publish once the caller's other writes are on their way.
#[must_use = "notifications are lost unless published"]
#[derive(Debug, Default)]
pub struct Notifications(Vec<OutgoingRecord>);

/// A message as [`Changes::record`] left it.
#[derive(Debug)]
pub struct Recording {
    /// The message as it was stored, or found already stored, before any settling change.
    pub stored: Message,
    /// The message after its settling change, when that was saved with it.
    pub settled: Option<Message>,
}

impl Changes {
    /// Changes saved in `store`, published on `log`.
    pub fn new(stores: &Stores, log: Arc<dyn EventLog>, topics: Topics) -> Self {
        Self {
            stores: stores.clone(),
            log,
            topics,
        }
    }

    /// Stores accepted messages in order (idempotently, assigning `seq`); a message whose conversation does not
    /// exist creates it, as a direct conversation of its sender. In the same store transaction, a message found
    /// SENT moves on by its update in `settles`, if it has one (the router settles most messages as it stores
    /// them, and so commits once); an update the forward-only rule refuses is not saved. Returns one recording
    /// per input, in order. Every message is announced as stored with the status it had: a message found already
    /// stored may come from a router that died before publishing, and announcing it again is the only way its
    /// readers hear of it (the real-time fan-out pushes each `seq` once).
    pub async fn record(
        &self,
        accepted: &[MessageAccepted],
        correlations: &[CorrelationId],
        settles: HashMap<MessageId, StatusUpdate>,
        out: &mut Notifications,
    ) -> Result<Vec<Recording>, ServiceError> {
        let settles = Arc::new(settles);
        let settle: Settle = {
            let settles = settles.clone();
            Arc::new(move |message: &Message| {
                let update = settles.get(&message.message_id)?;
                advance(message, update).map(|next| status_write(message, next, update))
            })
        };
        let mut answers = self
            .stores
            .messages
            .record_and_settle(accepted, settle.clone())
            .await?;
        let orphans: Vec<usize> = (0..answers.len())
            .filter(|&i| answers[i].0 == Recorded::NoConversation)
            .collect();
        if !orphans.is_empty() {
            // Normally the api creates the conversation first; a record injected by other means still gets one.
            let retried: Vec<MessageAccepted> =
                orphans.iter().map(|&i| accepted[i].clone()).collect();
            for message in &retried {
                self.stores
                    .conversations
                    .insert_conversation(&implicit_conversation(message))
                    .await?;
            }
            let again = self
                .stores
                .messages
                .record_and_settle(&retried, settle)
                .await?;
            for (i, answer) in orphans.into_iter().zip(again) {
                answers[i] = answer;
            }
        }
        let mut recordings = Vec::with_capacity(answers.len());
        for ((answer, saved), correlation_id) in answers.into_iter().zip(correlations) {
            let Recorded::Stored(message) = answer else {
                return Err(ServiceError::Internal(
                    "a message's conversation vanished while it was stored".into(),
                ));
            };
            out.0.push(encode(&stored_event(&message), correlation_id));
            let settled = saved.map(|write| {
                announce(out, &write.message, &settles[&message.message_id]);
                write.message
            });
            recordings.push(Recording {
                stored: message,
                settled,
            });
        }
        let settled: Vec<(&StatusUpdate, &Message)> = recordings
            .iter()
            .filter_map(|r| {
                let message = r.settled.as_ref()?;
                Some((&settles[&message.message_id], message))
            })
            .collect();
        self.read_before_delivery(&settled, out).await?;
        Ok(recordings)
    }

    /// Applies status updates in order through the forward-only state machine. `known` may hold the current
    /// state of some of the messages (as the caller just stored them), saving a read. Returns one transition per
    /// update, in order. A message that becomes DELIVERED after every member but its sender had already read
    /// past it (a receipt can come before the channel's report) goes on to READ at once.
    pub async fn apply(
        &self,
        updates: &[StatusUpdate],
        known: impl IntoIterator<Item = Message>,
        out: &mut Notifications,
    ) -> Result<Vec<Transition>, ServiceError> {
        let transitions = self.apply_in_rounds(updates, known, out).await?;
        let applied: Vec<(&StatusUpdate, &Message)> = updates
            .iter()
            .zip(&transitions)
            .filter_map(|(update, transition)| match transition {
                Transition::Applied(message) => Some((update, message)),
                _ => None,
            })
            .collect();
        self.read_before_delivery(&applied, out).await?;
        Ok(transitions)
    }

    /// Moves on to READ the messages that `applied` (each with the update that changed it) made DELIVERED and
    /// every member but their sender had already read.
    async fn read_before_delivery(
        &self,
        applied: &[(&StatusUpdate, &Message)],
        out: &mut Notifications,
    ) -> Result<(), ServiceError> {
        let reads = self.reads_before_delivery(applied).await?;
        if !reads.is_empty() {
            let known = applied.iter().map(|&(_, message)| message.clone());
            self.apply_in_rounds(&reads, known, out).await?;
        }
        Ok(())
    }

    /// READ updates for the messages of `applied` now DELIVERED that every member but their sender has already
    /// read. The usual case, conversations nobody has read into, costs one receipts query for the whole batch.
    async fn reads_before_delivery(
        &self,
        applied: &[(&StatusUpdate, &Message)],
    ) -> Result<Vec<StatusUpdate>, ServiceError> {
        let mut delivered: HashMap<&ConversationId, Vec<(&StatusUpdate, &Message)>> =
            HashMap::new();
        for &(update, message) in applied {
            if message.status == MessageStatus::Delivered {
                delivered
                    .entry(&message.conversation_id)
                    .or_default()
                    .push((update, message));
            }
        }
        if delivered.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<ConversationId> = delivered.keys().map(|&id| id.clone()).collect();
        let mut reached: HashMap<ConversationId, HashMap<UserId, u64>> = HashMap::new();
        for receipt in self.stores.receipts.receipts(&ids).await? {
            reached
                .entry(receipt.conversation_id)
                .or_default()
                .insert(receipt.user_id, receipt.up_to_seq);
        }
        let mut reads = Vec::new();
        for (id, reached) in reached {
            let Some(conversation) = self.stores.conversations.conversation(&id).await? else {
                continue;
            };
            for &(update, message) in &delivered[&id] {
                if read_by_all(message, &conversation.members, &reached) {
                    reads.push(StatusUpdate {
                        at: update.at,
                        correlation_id: update.correlation_id.clone(),
                        ..StatusUpdate::now(message.message_id.clone(), MessageStatus::Read, None)
                    });
                }
            }
        }
        Ok(reads)
    }

    /// [`Self::apply`] without the READ that may follow DELIVERED: rounds of compare-and-set writes until none
    /// raced with another writer.
    async fn apply_in_rounds(
        &self,
        updates: &[StatusUpdate],
        known: impl IntoIterator<Item = Message>,
        out: &mut Notifications,
    ) -> Result<Vec<Transition>, ServiceError> {
        let mut current: HashMap<MessageId, Message> = known
            .into_iter()
            .map(|m| (m.message_id.clone(), m))
            .collect();
        let mut transitions = vec![Transition::UnknownMessage; updates.len()];
        let mut todo: Vec<usize> = (0..updates.len()).collect();
        for _ in 0..MAX_ROUNDS {
            let missing: Vec<MessageId> = todo
                .iter()
                .map(|&i| &updates[i].message_id)
                .filter(|id| !current.contains_key(*id))
                .cloned()
                .collect();
            if !missing.is_empty() {
                for message in self.stores.messages.messages(&missing).await? {
                    current.insert(message.message_id.clone(), message);
                }
            }
            let mut writes = Vec::new();
            let mut written = Vec::new();
            for &i in &todo {
                let update = &updates[i];
                let Some(message) = current.get_mut(&update.message_id) else {
                    transitions[i] = Transition::UnknownMessage;
                    continue;
                };
                match advance(message, update) {
                    Some(next) => {
                        writes.push(status_write(message, next.clone(), update));
                        written.push(i);
                        *message = next;
                    }
                    None => transitions[i] = Transition::Refused(message.clone()),
                }
            }
            if writes.is_empty() {
                return Ok(transitions);
            }
            let saved = self.stores.messages.save_statuses(&writes).await?;
            let mut raced = Vec::new();
            for ((i, write), ok) in written.into_iter().zip(writes).zip(saved) {
                if ok {
                    announce(out, &write.message, &updates[i]);
                    transitions[i] = Transition::Applied(write.message);
                } else {
                    // Another writer moved the message first: decide again from what it stored.
                    current.remove(&updates[i].message_id);
                    raced.push(i);
                }
            }
            if raced.is_empty() {
                return Ok(transitions);
            }
            todo = raced;
        }
        Err(ServiceError::Unavailable(
            "status changes kept racing with another writer; try again".into(),
        ))
    }

    /// Applies updates and publishes at once: for callers with nothing else to write.
    pub async fn apply_now(
        &self,
        updates: &[StatusUpdate],
    ) -> Result<Vec<Transition>, ServiceError> {
        let mut out = Notifications::default();
        let transitions = self.apply(updates, [], &mut out).await?;
        self.publish(out).await?;
        Ok(transitions)
    }

    /// Appends the notifications to their topic.
    pub async fn publish(&self, out: Notifications) -> Result<(), ServiceError> {
        if !out.0.is_empty() {
            self.log
                .append_batch(&self.topics.notifications, out.0)
                .await?;
        }
        Ok(())
    }
}

/// Whether every member but the sender has read `message`; never true when nobody but the sender is a member (a
/// sender's own receipt must not make a channel message READ).
pub(crate) fn read_by_all(
    message: &Message,
    members: &[UserId],
    reached: &HashMap<UserId, u64>,
) -> bool {
    let mut readers = members
        .iter()
        .filter(|m| **m != message.sender_id)
        .peekable();
    readers.peek().is_some()
        && readers.all(|m| reached.get(m).is_some_and(|&seq| seq >= message.seq))
}

/// `message` after `update`, or `None` when the forward-only rule refuses it. Reaching DELIVERED or READ clears
/// the reason a message waited; READ implies DELIVERED (at the same time, if it was never reported).
fn advance(message: &Message, update: &StatusUpdate) -> Option<Message> {
    if !update.applies_to(message.status) {
        return None;
    }
    let mut next = message.clone();
    next.status = update.status;
    match update.status {
        MessageStatus::Delivered => {
            next.delivered_at = Some(update.at);
            next.failure_reason = None;
        }
        MessageStatus::Read => {
            next.delivered_at.get_or_insert(update.at);
            next.read_at = Some(update.at);
            next.failure_reason = None;
        }
        MessageStatus::Pending | MessageStatus::Failed => {
            next.failure_reason.clone_from(&update.detail)
        }
        MessageStatus::Sent => {}
    }
    Some(next)
}

/// The write that saves `next`, decided from `message` by `update`.
fn status_write(message: &Message, next: Message, update: &StatusUpdate) -> StatusWrite {
    StatusWrite {
        from: message.status,
        message: next,
        change: StatusChange {
            status: update.status,
            at: update.at,
            detail: update.detail.clone(),
            correlation_id: update
                .correlation_id
                .as_ref()
                .map(|c| c.as_str().to_owned()),
        },
    }
}

/// Adds the notification that `update` moved `message` (as it now is).
fn announce(out: &mut Notifications, message: &Message, update: &StatusUpdate) {
    let correlation = match &update.correlation_id {
        Some(c) => c.clone(),
        None => CorrelationId::from_header_or_new(None),
    };
    out.0
        .push(encode(&status_event(message, update), &correlation));
}

fn implicit_conversation(message: &MessageAccepted) -> Conversation {
    Conversation {
        conversation_id: message.conversation_id.clone(),
        kind: ConversationKind::Direct,
        name: None,
        members: vec![message.sender_id.clone()],
        created_at: message.timestamp,
        created_by: message.sender_id.clone(),
    }
}

fn stored_event(message: &Message) -> MessageStored {
    MessageStored {
        message_id: message.message_id.clone(),
        conversation_id: message.conversation_id.clone(),
        seq: message.seq,
        sender_id: message.sender_id.clone(),
        recipient_id: message.recipient_id.clone(),
        content: message.content.clone(),
        file_id: message.attachment.as_ref().map(|f| f.file_id.clone()),
        timestamp: message.timestamp,
        status: message.status,
    }
}

fn status_event(message: &Message, update: &StatusUpdate) -> MessageStatusChanged {
    MessageStatusChanged {
        message_id: message.message_id.clone(),
        conversation_id: message.conversation_id.clone(),
        seq: message.seq,
        status: update.status,
        at: update.at,
        detail: update.detail.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::advance;
    use crate::events::StatusUpdate;
    use crate::ids::{ConversationId, MessageId, UserId};
    use crate::model::Message;
    use crate::status::MessageStatus::{self, *};

    fn message(status: MessageStatus) -> Message {
        Message {
            message_id: MessageId::generate(),
            conversation_id: ConversationId::parse("c").unwrap(),
            seq: 1,
            sender_id: UserId::parse("u").unwrap(),
            recipient_id: None,
            content: "hi".into(),
            status,
            timestamp: 1,
            delivered_at: None,
            read_at: None,
            failure_reason: Some("waiting".into()),
            attachment: None,
        }
    }

    fn update(m: &Message, status: MessageStatus, at: i64) -> StatusUpdate {
        StatusUpdate {
            at,
            ..StatusUpdate::now(m.message_id.clone(), status, Some(format!("to {status}")))
        }
    }

    #[test]
    fn delivery_and_read_stamp_their_times_and_clear_the_reason() {
        let m = message(Pending);
        let delivered = advance(&m, &update(&m, Delivered, 10)).unwrap();
        assert_eq!(
            (delivered.status, delivered.delivered_at),
            (Delivered, Some(10))
        );
        assert_eq!(delivered.failure_reason, None);
        let read = advance(&delivered, &update(&m, Read, 12)).unwrap();
        assert_eq!((read.delivered_at, read.read_at), (Some(10), Some(12)));
    }

    #[test]
    fn read_without_delivery_implies_it_at_the_same_time() {
        let m = message(Sent);
        let read = advance(&m, &update(&m, Read, 7)).unwrap();
        assert_eq!((read.delivered_at, read.read_at), (Some(7), Some(7)));
    }

    #[test]
    fn waiting_and_failing_keep_the_reason_and_backward_steps_are_refused() {
        let m = message(Sent);
        let failed = advance(&m, &update(&m, Failed, 3)).unwrap();
        assert_eq!(failed.failure_reason.as_deref(), Some("to FAILED"));
        assert!(advance(&failed, &update(&m, Delivered, 4)).is_none());
        assert!(advance(&message(Read), &update(&m, Delivered, 4)).is_none());
    }

    #[test]
    fn an_operator_replay_reopens_a_failed_message() {
        let m = message(Failed);
        let mut replay = update(&m, Pending, 5);
        assert!(advance(&m, &replay).is_none());
        replay.replay = true;
        assert_eq!(advance(&m, &replay).unwrap().status, Pending);
    }
}

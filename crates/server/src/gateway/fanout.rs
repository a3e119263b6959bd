//! Follows the notifications topic from its end ("tail": every api instance sees every change, no consumer group)
//! and pushes each change to the sockets of its conversation's members on this instance. One task reads every
//! partition in order, so a conversation's changes reach a socket in the order they were applied (`seq` order for
//! new messages).

use super::hub::{Frame, Hub};
use chat4all_core::envelope::{HEADER_EVENT_TYPE, HEADER_PRODUCED_AT, decode};
use chat4all_core::events::{Event, MessageStatusChanged, MessageStored};
use chat4all_core::ids::{ConversationId, UserId};
use chat4all_core::ports::{Record, Stores, Tail};
use chat4all_core::resilience::Backoff;
use chat4all_core::time::now_millis;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a conversation's member list is trusted: a membership change reaches the stream within this.
const MEMBERS_TTL: Duration = Duration::from_secs(1);
/// Most conversations whose members are remembered.
const MEMBERS_CACHED: usize = 10_000;
/// Most records handled per poll, and how long an idle poll waits.
const BATCH: usize = 512;
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// Pushes the changes `tail` reads (the notifications topic, followed from the moment the api started) to the
/// connected members until `stop`.
pub async fn run(mut tail: Box<dyn Tail>, stores: Stores, hub: Arc<Hub>, stop: CancellationToken) {
    let mut members = Members::new(stores);
    let mut pushed = Pushed::default();
    loop {
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            polled = tail.poll(BATCH, IDLE_WAIT) => polled,
        };
        match polled {
            Ok(records) => {
                if hub.is_empty() {
                    continue;
                }
                for record in &records {
                    deliver(record, &hub, &mut members, &mut pushed).await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the notifications failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Turns one record into its frame and pushes it to the conversation's members.
async fn deliver(record: &Record, hub: &Hub, members: &mut Members, pushed: &mut Pushed) {
    let Some((conversation, frame, new_seq)) = frame_of(record) else {
        return;
    };
    if let Some(seq) = new_seq
        && !pushed.first_time(&conversation, seq)
    {
        return;
    }
    let Some(recipients) = members.of(&conversation).await else {
        return;
    };
    if hub.push(recipients.iter(), &frame) > 0
        && let Some(produced) = record
            .header(HEADER_PRODUCED_AT)
            .and_then(|t| t.parse::<i64>().ok())
    {
        let delay = (now_millis() - produced).max(0) as f64 / 1000.0;
        metrics::histogram!("websocket_notification_delay_seconds").record(delay);
    }
}

/// The frame of a notification record (`new_message` or `status_update`), with its conversation; `None` for a
/// record of another type or one that does not decode (logged: a poison record never stops the fan-out).
fn frame_of(record: &Record) -> Option<(ConversationId, Frame, Option<u64>)> {
    let frame = match record.header(HEADER_EVENT_TYPE) {
        Some(MessageStored::TYPE) => decode::<MessageStored>(record).map(|m| {
            let frame = json!({
                "type": "new_message",
                "message_id": m.message_id,
                "conversation_id": m.conversation_id,
                "seq": m.seq,
                "sender_id": m.sender_id,
                "recipient_id": m.recipient_id,
                "content": m.content,
                "status": m.status,
                "timestamp": m.timestamp,
                "file_id": m.file_id,
            });
            (m.conversation_id, frame, Some(m.seq))
        }),
        Some(MessageStatusChanged::TYPE) => decode::<MessageStatusChanged>(record).map(|c| {
            let frame = json!({
                "type": "status_update",
                "message_id": c.message_id,
                "conversation_id": c.conversation_id,
                "seq": c.seq,
                "status": c.status,
                "at": c.at,
                "detail": c.detail,
            });
            (c.conversation_id, frame, None)
        }),
        _ => return None,
    };
    match frame {
        Ok((conversation, mut frame, new_seq)) => {
            if let Some(fields) = frame.as_object_mut() {
                fields.retain(|_, v| !v.is_null());
            }
            Some((conversation, Arc::from(frame.to_string()), new_seq))
        }
        Err(e) => {
            tracing::warn!(error = %e, offset = record.offset, partition = record.partition, "undecodable notification skipped");
            None
        }
    }
}

/// The last message pushed per conversation. A router that replays a batch (after a failure between storing
/// and committing) publishes its messages again; their `seq` is not new, so sockets get each message once.
#[derive(Default)]
struct Pushed(HashMap<ConversationId, u64>);

/// Conversations whose last pushed `seq` is remembered; past it the memory starts over.
const PUSHED_REMEMBERED: usize = 100_000;

impl Pushed {
    /// Whether message `seq` of `conversation` is pushed for the first time (and remembers it).
    fn first_time(&mut self, conversation: &ConversationId, seq: u64) -> bool {
        if let Some(last) = self.0.get_mut(conversation) {
            if seq <= *last {
                return false;
            }
            *last = seq;
            return true;
        }
        if self.0.len() >= PUSHED_REMEMBERED {
            self.0.clear();
        }
        self.0.insert(conversation.clone(), seq);
        true
    }
}

/// Conversation members, remembered briefly so that a busy conversation costs one store read per second.
struct Members {
    stores: Stores,
    cached: HashMap<ConversationId, (Instant, Arc<[UserId]>)>,
}

/// Reads of a conversation's members before its change is given up (the store may be briefly unavailable).
const MEMBER_READS: u32 = 4;

impl Members {
    fn new(stores: Stores) -> Self {
        Self {
            stores,
            cached: HashMap::new(),
        }
    }

    async fn of(&mut self, conversation: &ConversationId) -> Option<Arc<[UserId]>> {
        if let Some((at, members)) = self.cached.get(conversation)
            && at.elapsed() < MEMBERS_TTL
        {
            return Some(members.clone());
        }
        let members: Arc<[UserId]> = self.load(conversation).await?.into();
        if self.cached.len() >= MEMBERS_CACHED {
            self.cached.retain(|_, (at, _)| at.elapsed() < MEMBERS_TTL);
            if self.cached.len() >= MEMBERS_CACHED {
                self.cached.clear();
            }
        }
        self.cached
            .insert(conversation.clone(), (Instant::now(), members.clone()));
        Some(members)
    }

    /// The members from the store, retried with backoff; `None` when the conversation is gone or stays
    /// unreadable (then the change is not pushed, and counts as dropped).
    async fn load(&self, conversation: &ConversationId) -> Option<Vec<UserId>> {
        let backoff = Backoff::default();
        for attempt in 1..=MEMBER_READS {
            match self.stores.conversations.conversation(conversation).await {
                Ok(found) => return found.map(|c| c.members),
                Err(e) if attempt == MEMBER_READS => {
                    tracing::error!(error = %e, conversation = %conversation, "members unreadable; change not pushed");
                    metrics::counter!("websocket_notifications_dropped_total").increment(1);
                }
                Err(_) => tokio::time::sleep(backoff.delay(attempt)).await,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Pushed;
    use chat4all_core::ids::ConversationId;

    #[test]
    fn a_republished_message_is_pushed_once() {
        let mut pushed = Pushed::default();
        let (a, b) = (
            ConversationId::parse("a").unwrap(),
            ConversationId::parse("b").unwrap(),
        );
        assert!(pushed.first_time(&a, 1));
        assert!(pushed.first_time(&a, 2));
        assert!(!pushed.first_time(&a, 2), "the same message again");
        assert!(!pushed.first_time(&a, 1), "an older one replayed");
        assert!(pushed.first_time(&b, 1), "conversations count apart");
        assert!(pushed.first_time(&a, 3));
    }
}

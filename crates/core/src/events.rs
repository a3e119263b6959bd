//! The events that flow between roles through the event log; `envelope` wraps them into records.

use crate::ids::{ConversationId, CorrelationId, FileId, MessageId, UserId};
use crate::status::MessageStatus;
use crate::time::now_millis;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Topic names (configurable so several deployments can share one Kafka cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Accepted messages, keyed by conversation.
    pub messages: String,
    /// Status updates, keyed by message.
    pub status_updates: String,
    /// Prefix of the per-channel outbound topics (`outbound.` gives `outbound.whatsapp`).
    pub outbound_prefix: String,
    /// Events that could not be processed, with the reason.
    pub dead_letters: String,
    /// Changes the store actually applied ([`MessageStored`], [`MessageStatusChanged`]), keyed by conversation:
    /// the one stream that real-time readers fan out.
    pub notifications: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            messages: "messages".into(),
            status_updates: "status-updates".into(),
            outbound_prefix: "outbound.".into(),
            dead_letters: "dead-letters".into(),
            notifications: "notifications".into(),
        }
    }
}

impl Topics {
    /// The outbound topic of `channel`.
    pub fn outbound(&self, channel: &str) -> String {
        format!("{}{channel}", self.outbound_prefix)
    }
}

/// A payload type that travels through the log.
pub trait Event: Serialize + DeserializeOwned {
    /// Value of the `event-type` header.
    const TYPE: &'static str;
    /// Partition key: events with the same key keep their order.
    fn key(&self) -> &str;
}

/// A message the api accepted (durably) for routing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAccepted {
    /// Id given at acceptance; the router is idempotent on it.
    pub message_id: MessageId,
    /// Target conversation (the partition key).
    pub conversation_id: ConversationId,
    /// Authenticated sender.
    pub sender_id: UserId,
    /// Routing target as the client gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<String>,
    /// The text.
    pub content: String,
    /// Attached file, checked to belong to the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<FileId>,
    /// Acceptance time (ms).
    pub timestamp: i64,
    /// End of the validity period (ms): a channel delivery not done by then fails as expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The recipient user's identity on the channel the client named, resolved at acceptance: the message goes
    /// there only. Carried in the event so that routing, and a replay of it, need no second lookup that an unlink
    /// in between could change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<ChannelAddress>,
}

/// An address on an external channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAddress {
    /// Channel name (`whatsapp`).
    pub channel: String,
    /// Address on the channel (`+5511999990000`).
    pub address: String,
}

impl Event for MessageAccepted {
    const TYPE: &'static str = "message.accepted";
    fn key(&self) -> &str {
        self.conversation_id.as_str()
    }
}

/// A stored message handed to a channel connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// The message.
    pub message_id: MessageId,
    /// Its conversation (the partition key, so a conversation is delivered in order).
    pub conversation_id: ConversationId,
    /// Its position in the conversation.
    pub seq: u64,
    /// Who sent it.
    pub sender_id: UserId,
    /// Channel name (`whatsapp`).
    pub channel: String,
    /// Address on the channel (`+5511999990000`).
    pub address: String,
    /// The text.
    pub content: String,
    /// The attached file, for channels that carry media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<OutboundFile>,
    /// Acceptance time (ms).
    pub timestamp: i64,
    /// End of the validity period (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A file reference handed to a connector with its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundFile {
    /// The file.
    pub file_id: FileId,
    /// Its safe name.
    pub filename: String,
    /// Its media type.
    pub mimetype: String,
    /// Its size.
    pub size_bytes: u64,
    /// `sha256:<hex>`.
    pub checksum: String,
}

impl Event for OutboundMessage {
    const TYPE: &'static str = "message.outbound";
    fn key(&self) -> &str {
        self.conversation_id.as_str()
    }
}

/// A status reported for a message (by a connector, or by the router itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The message.
    pub message_id: MessageId,
    /// The status reached.
    pub status: MessageStatus,
    /// When (ms).
    pub at: i64,
    /// Channel detail or failure reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The correlation id of the request that caused the change (filled from the record's header when applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<CorrelationId>,
    /// An operator replay of a dead letter: lets a FAILED message become PENDING again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

impl StatusUpdate {
    /// `message` reached `status` now.
    pub fn now(message_id: MessageId, status: MessageStatus, detail: Option<String>) -> Self {
        Self {
            message_id,
            status,
            at: now_millis(),
            detail,
            correlation_id: None,
            replay: false,
        }
    }

    /// Whether this update may move a message that is in `current`: forward only, except that an operator replay
    /// may bring a FAILED message back to PENDING.
    pub fn applies_to(&self, current: MessageStatus) -> bool {
        current.can_advance_to(self.status)
            || (self.replay
                && current == MessageStatus::Failed
                && self.status == MessageStatus::Pending)
    }
}

impl Event for StatusUpdate {
    const TYPE: &'static str = "status.update";
    fn key(&self) -> &str {
        self.message_id.as_str()
    }
}

/// A message that entered its conversation's history (published once it is stored, and again, with the status it
/// has reached, whenever a replayed batch finds it stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStored {
    /// The message.
    pub message_id: MessageId,
    /// Its conversation (the partition key, so a conversation's notifications keep their order).
    pub conversation_id: ConversationId,
    /// Its position in the conversation.
    pub seq: u64,
    /// Who sent it.
    pub sender_id: UserId,
    /// Routing target as the client gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<String>,
    /// The text.
    pub content: String,
    /// Attached file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<FileId>,
    /// Acceptance time (ms).
    pub timestamp: i64,
    /// Its status when this was published: SENT when new; further on when a replay found it stored.
    #[serde(default)]
    pub status: MessageStatus,
}

impl Event for MessageStored {
    const TYPE: &'static str = "message.stored";
    fn key(&self) -> &str {
        self.conversation_id.as_str()
    }
}

/// A status change the store applied (refused changes are never published).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStatusChanged {
    /// The message.
    pub message_id: MessageId,
    /// Its conversation (the partition key).
    pub conversation_id: ConversationId,
    /// Its position in the conversation.
    pub seq: u64,
    /// The status reached.
    pub status: MessageStatus,
    /// When (ms).
    pub at: i64,
    /// Channel detail or failure reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event for MessageStatusChanged {
    const TYPE: &'static str = "message.status_changed";
    fn key(&self) -> &str {
        self.conversation_id.as_str()
    }
}

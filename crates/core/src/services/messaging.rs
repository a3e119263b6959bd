//! Sending, reading and marking messages: the api's use cases around messages.

use super::changes::Changes;
use super::conversations::Conversations;
use super::identities::Identities;
use super::receipts::Receipts;
use crate::envelope::encode;
use crate::error::ServiceError;
use crate::events::{MessageAccepted, Topics};
use crate::ids::{
    ConversationId, CorrelationId, FileId, IdempotencyKey, MessageId, UserId, Username,
};
use crate::model::{Conversation, HistoryPage, HistoryQuery, Message, ReadReceipt, StatusChange};
use crate::ports::{EventLog, IdempotentRequest, Stores};
use crate::recipient::Recipient;
use crate::status::MessageStatus;
use crate::time::now_millis;
use std::sync::Arc;
use std::time::Duration;

/// Largest message content, in bytes.
pub const MAX_CONTENT_BYTES: usize = 10 * 1024;
/// Longest validity period a message may ask for (30 days).
pub const MAX_VALIDITY_SECS: u64 = 30 * 24 * 3600;
/// Largest `seq`, `offset` or cursor: stores keep positions as signed 64-bit integers.
pub const MAX_POSITION: u64 = i64::MAX as u64;
/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// A message as the client submitted it (fields not yet validated).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SendMessage {
    /// Target conversation; created on first use.
    pub conversation_id: String,
    /// The text.
    pub content: String,
    /// Routing target.
    pub recipient_id: Option<String>,
    /// Must equal the caller when given.
    pub sender_id: Option<String>,
    /// Attached file.
    pub file_id: Option<String>,
    /// How long a channel may take to deliver it; the default validity when absent.
    pub validity_seconds: Option<u64>,
    /// Route a message to a user through their identity on this channel only. Left out of the fingerprint when
    /// absent, so that keys reserved before it existed still match their retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// The answer to an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The new message's id.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Acceptance time (ms).
    pub timestamp: i64,
}

/// A message with its status history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDetail {
    /// The message.
    pub message: Message,
    /// Its status changes, oldest first.
    pub history: Vec<StatusChange>,
    /// Who has read it, its sender aside.
    pub read_by: Vec<UserId>,
}

/// What marking one message read came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedRead {
    /// The message afterwards: READ, or still DELIVERED while other members of its group have not read it.
    pub message: Message,
    /// The reader's receipt in its conversation.
    pub receipt: ReadReceipt,
}

/// The messaging use cases.
#[derive(Clone)]
pub struct Messaging {
    stores: Stores,
    log: Arc<dyn EventLog>,
    topics: Topics,
    conversations: Conversations,
    receipts: Receipts,
    identities: Identities,
    default_validity: Duration,
}

impl Messaging {
    /// Messaging over `store` and `log`, resolving named channels through `identities`.
    pub fn new(
        stores: &Stores,
        log: Arc<dyn EventLog>,
        topics: Topics,
        identities: Identities,
        default_validity: Duration,
    ) -> Self {
        let conversations = Conversations::new(stores);
        let changes = Changes::new(stores, log.clone(), topics.clone());
        Self {
            receipts: Receipts::new(stores, changes),
            stores: stores.clone(),
            log,
            topics,
            conversations,
            identities,
            default_validity,
        }
    }

    /// Validates and durably accepts a message. Returns only once the message is on the event log.
    pub async fn send(
        &self,
        caller: &UserId,
        request: SendMessage,
        idempotency_key: Option<&IdempotencyKey>,
        correlation_id: &CorrelationId,
    ) -> Result<Accepted, ServiceError> {
        if let Some(key) = idempotency_key
            && let Some(first) = self.answered(caller, key, &request).await?
        {
            return Ok(first);
        }
        let conversation_id = check_text(&request.conversation_id, &request.content)?;
        if let Some(sender) = request.sender_id.as_deref() {
            self.check_sender(caller, sender).await?;
        }
        let validity = match request.validity_seconds {
            None => self.default_validity,
            Some(secs) if (1..=MAX_VALIDITY_SECS).contains(&secs) => Duration::from_secs(secs),
            Some(_) => {
                return Err(ServiceError::Invalid(format!(
                    "validity_seconds must be between 1 and {MAX_VALIDITY_SECS}"
                )));
            }
        };
        let recipient = Recipient::parse(request.recipient_id.as_deref())?;
        let invited = match &recipient {
            Recipient::User(user) => Some(user),
            _ => None,
        };
        // Resolved before the conversation may be created, so that a refusal leaves nothing behind.
        let via = match (request.channel.as_deref(), invited) {
            (None, _) => None,
            (Some(channel), Some(user)) => Some(self.identities.address_on(user, channel).await?),
            (Some(_), None) => {
                return Err(ServiceError::Invalid(
                    "channel needs a recipient_id naming a user of this system".into(),
                ));
            }
        };
        self.conversations
            .ensure_member(&conversation_id, caller, invited)
            .await?;
        let file_id = match &request.file_id {
            None => None,
            Some(raw) => {
                let unknown = || {
                    ServiceError::Invalid(format!(
                        "file_id {raw:?} does not name a file of this conversation"
                    ))
                };
                let id = FileId::parse(raw.as_str()).map_err(|_| unknown())?;
                match self.stores.files.file(&id).await? {
                    Some(file) if file.conversation_id == conversation_id => Some(id),
                    _ => return Err(unknown()),
                }
            }
        };

        let mut accepted = MessageAccepted {
            message_id: MessageId::generate(),
            conversation_id,
            sender_id: caller.clone(),
            recipient_id: request.recipient_id.clone(),
            content: request.content.clone(),
            file_id,
            timestamp: now_millis(),
            expires_at: None,
            via,
        };
        let validity_ms = 1000 * validity.as_secs() as i64;
        accepted.expires_at = Some(accepted.timestamp + validity_ms);
        let Some(key) = idempotency_key else {
            self.log
                .append(&self.topics.messages, encode(&accepted, correlation_id))
                .await?;
            return Ok(answer(&accepted));
        };

        let proposal = IdempotentRequest {
            fingerprint: fingerprint(&request)?,
            message_id: accepted.message_id.clone(),
            conversation_id: accepted.conversation_id.clone(),
            timestamp: accepted.timestamp,
            appended: false,
        };
        let not_before = accepted.timestamp - IDEMPOTENCY_WINDOW_MS;
        let reserved = self
            .stores
            .idempotency
            .reserve_idempotency_key(caller, key, &proposal, not_before)
            .await?;
        if reserved.fingerprint != proposal.fingerprint {
            return Err(ServiceError::Unprocessable(
                "Idempotency-Key was already used with a different request".into(),
            ));
        }
        accepted.message_id = reserved.message_id;
        accepted.timestamp = reserved.timestamp;
        accepted.expires_at = Some(accepted.timestamp + validity_ms);
        if !reserved.appended {
            // First attempt, or a retry after a crash between reservation and append: the router is idempotent on
            // message_id, so appending again can never duplicate the message.
            self.log
                .append(&self.topics.messages, encode(&accepted, correlation_id))
                .await?;
            self.stores
                .idempotency
                .mark_idempotency_key_appended(caller, key)
                .await?;
        }
        Ok(answer(&accepted))
    }

    /// The first answer to a retried request whose message is already on the log: a retry gets it even if the
    /// sender has since left the conversation or the recipient's identity changed. A key used with another body is
    /// refused (422).
    async fn answered(
        &self,
        caller: &UserId,
        key: &IdempotencyKey,
        request: &SendMessage,
    ) -> Result<Option<Accepted>, ServiceError> {
        let not_before = now_millis() - IDEMPOTENCY_WINDOW_MS;
        let Some(first) = self
            .stores
            .idempotency
            .idempotent_request(caller, key, not_before)
            .await?
        else {
            return Ok(None);
        };
        if first.fingerprint != fingerprint(request)? {
            return Err(ServiceError::Unprocessable(
                "Idempotency-Key was already used with a different request".into(),
            ));
        }
        Ok(first.appended.then_some(Accepted {
            message_id: first.message_id,
            conversation_id: first.conversation_id,
            timestamp: first.timestamp,
        }))
    }

    /// `sender_id` must name the caller, by user id or (as the older clients do) by username.
    async fn check_sender(&self, caller: &UserId, sender: &str) -> Result<(), ServiceError> {
        if sender == caller.as_str() {
            return Ok(());
        }
        let by_name = match Username::parse(sender) {
            Ok(name) => self.stores.accounts.user_credentials(&name).await?,
            Err(_) => None,
        };
        match by_name {
            Some(credentials) if &credentials.user.user_id == caller => Ok(()),
            _ => Err(ServiceError::Forbidden(
                "sender_id must be the authenticated user (their user id or username)".into(),
            )),
        }
    }

    /// A page of a conversation's history, for a member. Positions beyond the largest `seq` a store can hold are
    /// refused rather than wrapped.
    pub async fn history(
        &self,
        caller: &UserId,
        conversation: &str,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, ServiceError> {
        for (name, value) in [
            ("offset", Some(query.offset)),
            ("after", query.after),
            ("before", query.before),
        ] {
            if value.is_some_and(|v| v > MAX_POSITION) {
                return Err(ServiceError::Invalid(format!(
                    "{name} must be between 0 and {MAX_POSITION}"
                )));
            }
        }
        let id = ConversationId::parse(conversation)?;
        self.conversations.for_member(&id, caller).await?;
        Ok(self.stores.messages.history(&id, query).await?)
    }

    /// One message with its status history, for a member of its conversation.
    pub async fn message(
        &self,
        caller: &UserId,
        message_id: &str,
    ) -> Result<MessageDetail, ServiceError> {
        let (message, _) = self.visible_message(caller, message_id).await?;
        let history = self
            .stores
            .messages
            .status_history(&message.message_id)
            .await?;
        let read_by = self.receipts.read_by(&message).await?;
        Ok(MessageDetail {
            message,
            history,
            read_by,
        })
    }

    /// Records that `caller` has read a message, as a read receipt up to its `seq`: the message becomes READ once
    /// every other member has read it (at once in a direct conversation). It must be DELIVERED or READ (else 409);
    /// the caller must be a member (else 404) and not the sender (403). Repeating it changes nothing.
    pub async fn mark_read(
        &self,
        caller: &UserId,
        message_id: &str,
        correlation_id: &CorrelationId,
    ) -> Result<MarkedRead, ServiceError> {
        let (message, conversation) = self.visible_message(caller, message_id).await?;
        if &message.sender_id == caller {
            return Err(ServiceError::Forbidden(
                "the sender cannot mark their own message read".into(),
            ));
        }
        if !matches!(
            message.status,
            MessageStatus::Delivered | MessageStatus::Read
        ) {
            return Err(ServiceError::Conflict(format!(
                "a {} message cannot be marked read",
                message.status
            )));
        }
        let receipt = self
            .receipts
            .advance(
                &conversation,
                caller,
                message.seq,
                now_millis(),
                correlation_id,
            )
            .await?;
        let message = self
            .stores
            .messages
            .message(&message.message_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("message {message_id} not found")))?;
        Ok(MarkedRead { message, receipt })
    }

    /// The message if it exists and `caller` is a member of its conversation; 404 otherwise, the same answer for
    /// a message of someone else's conversation as for one that does not exist.
    async fn visible_message(
        &self,
        caller: &UserId,
        message_id: &str,
    ) -> Result<(Message, Conversation), ServiceError> {
        let not_found = || ServiceError::NotFound(format!("message {message_id} not found"));
        let id = MessageId::parse(message_id).map_err(|_| not_found())?;
        let message = self
            .stores
            .messages
            .message(&id)
            .await?
            .ok_or_else(not_found)?;
        let conversation = self
            .conversations
            .visible_to(&message.conversation_id, caller)
            .await?
            .ok_or_else(not_found)?;
        Ok((message, conversation))
    }
}

/// The canonical form of a request, compared between a first request and its retries.
/// The checks of a send that need no store: the conversation id and the content (not blank, at most
/// [`MAX_CONTENT_BYTES`]). The benchmark endpoint runs them too, so that it differs from a send only by the send.
pub fn check_text(conversation_id: &str, content: &str) -> Result<ConversationId, ServiceError> {
    let conversation_id = ConversationId::parse(conversation_id)?;
    if content.trim().is_empty() {
        return Err(ServiceError::Invalid("content must not be empty".into()));
    }
    if content.len() > MAX_CONTENT_BYTES {
        return Err(ServiceError::TooLarge(format!(
            "content is over {MAX_CONTENT_BYTES} bytes"
        )));
    }
    Ok(conversation_id)
}

fn fingerprint(request: &SendMessage) -> Result<String, ServiceError> {
    serde_json::to_string(request).map_err(|e| ServiceError::Internal(e.to_string()))
}

fn answer(accepted: &MessageAccepted) -> Accepted {
    Accepted {
        message_id: accepted.message_id.clone(),
        conversation_id: accepted.conversation_id.clone(),
        timestamp: accepted.timestamp,
    }
}

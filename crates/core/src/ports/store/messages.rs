//! Messages in their conversation's order, with their status history.

use super::{Backend, StoreError};
use crate::events::MessageAccepted;
use crate::ids::{ConversationId, MessageId, UserId};
use crate::model::{HistoryPage, HistoryQuery, Message, Reading, StatusChange};
use crate::status::MessageStatus;
use async_trait::async_trait;
use std::sync::Arc;

/// What recording one accepted message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant, reason = "nearly every answer is `Stored`")]
pub enum Recorded {
    /// Stored now with the next `seq` of its conversation, or found already stored (then returned as it is).
    Stored(Message),
    /// Its conversation does not exist; nothing was stored.
    NoConversation,
}

/// A status change to save: valid only while the stored message is still in `from`, so that two writers racing
/// on one message cannot both move it (compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusWrite {
    /// The status the change was decided from.
    pub from: MessageStatus,
    /// The message as it is after the change (status, timestamps, reason).
    pub message: Message,
    /// The step to add to its status history.
    pub change: StatusChange,
}

/// The status change to save with a message just recorded, decided by core from the message as the store has it
/// (`None`: leave it as it is).
pub type Settle = Arc<dyn Fn(&Message) -> Option<StatusWrite> + Send + Sync>;

/// Messages in their conversations' order, with their status history.
#[async_trait]
pub trait MessageStore: Backend {
    /// Stores accepted messages in order (status SENT, one SENT step in the history), giving each the next `seq`
    /// of its conversation. Idempotent: a message already stored is returned as it is, never duplicated. Returns
    /// one answer per input, in order.
    async fn record_messages(
        &self,
        accepted: &[MessageAccepted],
    ) -> Result<Vec<Recorded>, StoreError> {
        let recorded = self.record_and_settle(accepted, Arc::new(|_| None)).await?;
        Ok(recorded.into_iter().map(|(answer, _)| answer).collect())
    }

    /// [`Self::record_messages`], and in the same transaction, for each message stored or found, the change
    /// `settle` decides for it saved as [`Self::save_statuses`] saves it: a router that settles the messages it
    /// stores commits once, and writes each message's pages once. Returns per input its answer (the message as it
    /// was before `settle`) and the change saved, if any.
    async fn record_and_settle(
        &self,
        accepted: &[MessageAccepted],
        settle: Settle,
    ) -> Result<Vec<(Recorded, Option<StatusWrite>)>, StoreError>;

    /// Saves status changes in order, in one transaction; returns per change whether it was saved (false when
    /// the message was no longer in `from`).
    async fn save_statuses(&self, writes: &[StatusWrite]) -> Result<Vec<bool>, StoreError>;

    /// One message.
    async fn message(&self, id: &MessageId) -> Result<Option<Message>, StoreError>;

    /// The messages among `ids` that exist, in any order.
    async fn messages(&self, ids: &[MessageId]) -> Result<Vec<Message>, StoreError>;

    /// A message's status changes, oldest first.
    async fn status_history(&self, id: &MessageId) -> Result<Vec<StatusChange>, StoreError>;

    /// A page of a conversation's messages.
    async fn history(
        &self,
        conversation: &ConversationId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError>;

    /// Where `reader` stands in each of `conversations`: one answer per input, in order (zeros where there is
    /// no message or no receipt). A whole page of conversations at once, so that listing them costs one query;
    /// it reads the receipts kept beside the messages, as `record_messages` moves the conversations' counters.
    async fn readings(
        &self,
        reader: &UserId,
        conversations: &[ConversationId],
    ) -> Result<Vec<Reading>, StoreError>;
}

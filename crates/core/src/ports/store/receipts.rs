//! Per-participant read receipts: how far each member has read a conversation.

use super::{Backend, StoreError};
use crate::ids::ConversationId;
use crate::model::ReadReceipt;
use async_trait::async_trait;

/// Read receipts, one per conversation and reader.
#[async_trait]
pub trait ReceiptStore: Backend {
    /// Saves `receipt` unless the reader's receipt already reaches as far (receipts never move back); returns
    /// the receipt in force before, if any.
    async fn advance_receipt(
        &self,
        receipt: &ReadReceipt,
    ) -> Result<Option<ReadReceipt>, StoreError>;

    /// Every reader's receipt in these conversations, in one query however many there are (the router asks for
    /// the conversations of a whole batch at once).
    async fn receipts(
        &self,
        conversations: &[ConversationId],
    ) -> Result<Vec<ReadReceipt>, StoreError>;
}

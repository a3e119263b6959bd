//! Conversations and their members, listed page by page (keyset, newest first).

use super::{Backend, StoreError};
use crate::ids::{ConversationId, UserId};
use crate::model::Conversation;
use async_trait::async_trait;

/// Where a page of a user's conversations starts: right after this conversation in newest-first order. A key, not
/// an offset, so pages stay stable while conversations are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationCursor {
    /// Creation time (ms) of the last conversation of the previous page.
    pub created_at: i64,
    /// Its id (ties on the creation time are ordered by id).
    pub conversation_id: ConversationId,
}

/// Conversations and their members.
#[async_trait]
pub trait ConversationStore: Backend {
    /// Adds a conversation with its members; false when the id is taken (nothing changes then).
    async fn insert_conversation(&self, conversation: &Conversation) -> Result<bool, StoreError>;

    /// A conversation with its members.
    async fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>, StoreError>;

    /// Up to `limit` of the conversations `user` is a member of, newest first (ties by id), after `after`.
    async fn conversations_of(
        &self,
        user: &UserId,
        after: Option<&ConversationCursor>,
        limit: u32,
    ) -> Result<Vec<Conversation>, StoreError>;
}

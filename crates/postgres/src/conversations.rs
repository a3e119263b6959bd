//! The PostgreSQL store's conversations and their members, listed by keyset pages.

use crate::PostgresStore;
use crate::error::Error;
use crate::rows::{insert_conversation_rows, load_conversations};
use async_trait::async_trait;
use chat4all_core::ids::{ConversationId, UserId};
use chat4all_core::model::Conversation;
use chat4all_core::ports::{ConversationCursor, ConversationStore, StoreError};

#[async_trait]
impl ConversationStore for PostgresStore {
    async fn insert_conversation(&self, conversation: &Conversation) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(Error::from)?;
        if !insert_conversation_rows(&*tx, conversation).await? {
            return Ok(false);
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(true)
    }

    async fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>, StoreError> {
        let client = self.client().await?;
        Ok(load_conversations(&**client, &[id.as_str().to_owned()])
            .await?
            .pop())
    }

    async fn conversations_of(
        &self,
        user: &UserId,
        after: Option<&ConversationCursor>,
        limit: u32,
    ) -> Result<Vec<Conversation>, StoreError> {
        let client = self.client().await?;
        let (after_time, after_id) = after
            .map(|c| (c.created_at, c.conversation_id.as_str()))
            .unzip();
        let rows = client
            .query(
                "SELECT c.conversation_id FROM conversations c JOIN members m ON m.conversation_id = c.conversation_id
                 WHERE m.user_id = $1
                   AND ($2::BIGINT IS NULL OR c.created_at < $2 OR (c.created_at = $2 AND c.conversation_id > $3))
                 ORDER BY c.created_at DESC, c.conversation_id LIMIT $4",
                &[&user.as_str(), &after_time, &after_id, &i64::from(limit)],
            )
            .await
            .map_err(Error::from)?;
        let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(load_conversations(&**client, &ids).await?)
    }
}

//! The SQLite store's conversations and their members.

use super::SqliteStore;
use super::rows::{insert_conversation_rows, load_conversation};
use async_trait::async_trait;
use chat4all_core::ids::{ConversationId, UserId};
use chat4all_core::model::Conversation;
use chat4all_core::ports::{ConversationCursor, ConversationStore, StoreError};
use rusqlite::params;

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn insert_conversation(&self, conversation: &Conversation) -> Result<bool, StoreError> {
        let conversation = conversation.clone();
        self.write(move |conn| {
            let exists = conn
                .prepare_cached("SELECT 1 FROM conversations WHERE conversation_id = ?1")?
                .exists([conversation.conversation_id.as_str()])?;
            if exists {
                return Ok(false);
            }
            insert_conversation_rows(conn, &conversation)?;
            Ok(true)
        })
        .await
    }

    async fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>, StoreError> {
        let id = id.clone();
        self.read(move |conn| load_conversation(conn, id.as_str()))
            .await
    }

    async fn conversations_of(
        &self,
        user: &UserId,
        after: Option<&ConversationCursor>,
        limit: u32,
    ) -> Result<Vec<Conversation>, StoreError> {
        let user = user.clone();
        let after = after.map(|c| (c.created_at, c.conversation_id.as_str().to_owned()));
        self.read(move |conn| {
            let (after_time, after_id) = after.unzip();
            let ids: Vec<String> = conn
                .prepare_cached(
                    "SELECT c.conversation_id FROM conversations c JOIN members m ON m.conversation_id = c.conversation_id
                     WHERE m.user_id = ?1
                       AND (?2 IS NULL OR c.created_at < ?2 OR (c.created_at = ?2 AND c.conversation_id > ?3))
                     ORDER BY c.created_at DESC, c.conversation_id LIMIT ?4",
                )?
                .query_map(params![user.as_str(), after_time, after_id, limit], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            ids.iter().filter_map(|id| load_conversation(conn, id).transpose()).collect()
        })
        .await
    }
}

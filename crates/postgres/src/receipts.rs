//! The PostgreSQL store's read receipts: one row per conversation and reader, that only ever moves forward.

use crate::PostgresStore;
use crate::error::Error;
use crate::rows::parsed;
use async_trait::async_trait;
use chat4all_core::ids::ConversationId;
use chat4all_core::model::ReadReceipt;
use chat4all_core::ports::{ReceiptStore, StoreError};
use tokio_postgres::Row;

#[async_trait]
impl ReceiptStore for PostgresStore {
    async fn advance_receipt(
        &self,
        receipt: &ReadReceipt,
    ) -> Result<Option<ReadReceipt>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(Error::from)?;
        let (conversation, user) = (receipt.conversation_id.as_str(), receipt.user_id.as_str());
        let before = tx
            .query_opt(
                "SELECT conversation_id, user_id, up_to_seq, read_at FROM read_receipts
                 WHERE conversation_id = $1 AND user_id = $2 FOR UPDATE",
                &[&conversation, &user],
            )
            .await
            .map_err(Error::from)?
            .map(|r| receipt_row(&r))
            .transpose()?;
        if before
            .as_ref()
            .is_none_or(|b| b.up_to_seq < receipt.up_to_seq)
        {
            tx.execute(
                "INSERT INTO read_receipts (conversation_id, user_id, up_to_seq, read_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (conversation_id, user_id) DO UPDATE SET up_to_seq = excluded.up_to_seq,
                     read_at = excluded.read_at
                 WHERE read_receipts.up_to_seq < excluded.up_to_seq",
                &[&conversation, &user, &(receipt.up_to_seq as i64), &receipt.read_at],
            )
            .await
            .map_err(Error::from)?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(before)
    }

    async fn receipts(
        &self,
        conversations: &[ConversationId],
    ) -> Result<Vec<ReadReceipt>, StoreError> {
        self.for_keys(
            "SELECT conversation_id, user_id, up_to_seq, read_at FROM read_receipts
             WHERE conversation_id = ANY($1)",
            conversations,
            receipt_row,
        )
        .await
    }
}

fn receipt_row(row: &Row) -> Result<ReadReceipt, Error> {
    Ok(ReadReceipt {
        conversation_id: parsed(row, 0)?,
        user_id: parsed(row, 1)?,
        up_to_seq: row.try_get::<_, i64>(2)? as u64,
        read_at: row.try_get(3)?,
    })
}

//! The SQLite store's read receipts: one row per conversation and reader, that only ever moves forward.

use super::SqliteStore;
use super::rows::{parsed, rows_in};
use async_trait::async_trait;
use chat4all_core::ids::ConversationId;
use chat4all_core::model::ReadReceipt;
use chat4all_core::ports::{ReceiptStore, StoreError};
use rusqlite::{OptionalExtension, Row, params};

#[async_trait]
impl ReceiptStore for SqliteStore {
    async fn advance_receipt(
        &self,
        receipt: &ReadReceipt,
    ) -> Result<Option<ReadReceipt>, StoreError> {
        let receipt = receipt.clone();
        self.write(move |conn| {
            let (conversation, user) = (receipt.conversation_id.as_str(), receipt.user_id.as_str());
            let before = conn
                .prepare_cached(
                    "SELECT conversation_id, user_id, up_to_seq, read_at FROM read_receipts
                     WHERE conversation_id = ?1 AND user_id = ?2",
                )?
                .query_row([conversation, user], receipt_row)
                .optional()?;
            if before.as_ref().is_none_or(|b| b.up_to_seq < receipt.up_to_seq) {
                conn.prepare_cached(
                    "INSERT INTO read_receipts (conversation_id, user_id, up_to_seq, read_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (conversation_id, user_id) DO UPDATE SET up_to_seq = excluded.up_to_seq, read_at = excluded.read_at",
                )?
                .execute(params![conversation, user, receipt.up_to_seq as i64, receipt.read_at])?;
            }
            Ok(before)
        })
        .await
    }

    async fn receipts(
        &self,
        conversations: &[ConversationId],
    ) -> Result<Vec<ReadReceipt>, StoreError> {
        let ids: Vec<String> = conversations
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        self.read(move |conn| {
            rows_in(
                conn,
                "SELECT conversation_id, user_id, up_to_seq, read_at FROM read_receipts WHERE conversation_id IN",
                &ids,
                receipt_row,
            )
        })
        .await
    }
}

fn receipt_row(row: &Row<'_>) -> rusqlite::Result<ReadReceipt> {
    Ok(ReadReceipt {
        conversation_id: parsed(row, 0)?,
        user_id: parsed(row, 1)?,
        up_to_seq: row.get::<_, i64>(2)? as u64,
        read_at: row.get(3)?,
    })
}

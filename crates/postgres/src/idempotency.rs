//! The PostgreSQL store's `Idempotency-Key` reservations of messages and uploads.

use crate::PostgresStore;
use crate::error::Error;
use crate::rows::parsed;
use async_trait::async_trait;
use chat4all_core::ids::{FileId, IdempotencyKey, UserId};
use chat4all_core::ports::{IdempotencyStore, IdempotentRequest, StoreError};
use tokio_postgres::Row;

const REQUEST_COLUMNS: &str = "fingerprint, message_id, conversation_id, timestamp, appended";

fn idempotent_row(row: &Row) -> Result<IdempotentRequest, Error> {
    Ok(IdempotentRequest {
        fingerprint: row.try_get(0)?,
        message_id: parsed(row, 1)?,
        conversation_id: parsed(row, 2)?,
        timestamp: row.try_get(3)?,
        appended: row.try_get(4)?,
    })
}

#[async_trait]
impl IdempotencyStore for PostgresStore {
    async fn reserve_idempotency_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        request: &IdempotentRequest,
        not_before: i64,
    ) -> Result<IdempotentRequest, StoreError> {
        let client = self.client().await?;
        // One statement: the upsert takes the key's row lock, so of two racing reservations the second sees the
        // first's and keeps it. RETURNING gives the row in force when it was written; otherwise it is read after.
        let written = client
            .query_opt(
                &format!(
                    "INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, message_id, conversation_id,
                         timestamp, appended, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, FALSE, $6)
                     ON CONFLICT (user_id, idem_key) DO UPDATE SET fingerprint = excluded.fingerprint,
                         message_id = excluded.message_id, conversation_id = excluded.conversation_id,
                         timestamp = excluded.timestamp, appended = FALSE, created_at = excluded.created_at
                     WHERE idempotency_keys.created_at < $7
                     RETURNING {REQUEST_COLUMNS}"
                ),
                &[
                    &user.as_str(),
                    &key.as_str(),
                    &request.fingerprint,
                    &request.message_id.as_str(),
                    &request.conversation_id.as_str(),
                    &request.timestamp,
                    &not_before,
                ],
            )
            .await
            .map_err(Error::from)?;
        let row = match written {
            Some(row) => row,
            None => client
                .query_one(
                    &format!("SELECT {REQUEST_COLUMNS} FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2"),
                    &[&user.as_str(), &key.as_str()],
                )
                .await
                .map_err(Error::from)?,
        };
        Ok(idempotent_row(&row)?)
    }

    async fn idempotent_request(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        not_before: i64,
    ) -> Result<Option<IdempotentRequest>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM idempotency_keys
                     WHERE user_id = $1 AND idem_key = $2 AND created_at >= $3"
                ),
                &[&user.as_str(), &key.as_str(), &not_before],
            )
            .await
            .map_err(Error::from)?;
        Ok(row.map(|r| idempotent_row(&r)).transpose()?)
    }

    async fn mark_idempotency_key_appended(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE idempotency_keys SET appended = TRUE WHERE user_id = $1 AND idem_key = $2",
                &[&user.as_str(), &key.as_str()],
            )
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn reserve_file_idempotency_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        fingerprint: &str,
        file_id: &FileId,
        not_before: i64,
    ) -> Result<(String, FileId), StoreError> {
        let client = self.client().await?;
        let written = client
            .query_opt(
                "INSERT INTO file_idempotency_keys (user_id, idem_key, fingerprint, file_id, created_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id, idem_key) DO UPDATE SET fingerprint = excluded.fingerprint,
                     file_id = excluded.file_id, created_at = excluded.created_at
                 WHERE file_idempotency_keys.created_at < $6
                 RETURNING fingerprint, file_id",
                &[
                    &user.as_str(),
                    &key.as_str(),
                    &fingerprint,
                    &file_id.as_str(),
                    &chat4all_core::time::now_millis(),
                    &not_before,
                ],
            )
            .await
            .map_err(Error::from)?;
        let row = match written {
            Some(row) => row,
            None => client
                .query_one(
                    "SELECT fingerprint, file_id FROM file_idempotency_keys WHERE user_id = $1 AND idem_key = $2",
                    &[&user.as_str(), &key.as_str()],
                )
                .await
                .map_err(Error::from)?,
        };
        Ok((row.try_get(0).map_err(Error::from)?, parsed(&row, 1)?))
    }

    async fn purge_idempotency_keys(&self, before: i64) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(Error::from)?;
        let messages = tx
            .execute(
                "DELETE FROM idempotency_keys WHERE created_at < $1",
                &[&before],
            )
            .await
            .map_err(Error::from)?;
        let files = tx
            .execute(
                "DELETE FROM file_idempotency_keys WHERE created_at < $1",
                &[&before],
            )
            .await
            .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(messages + files)
    }
}

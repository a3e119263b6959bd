//! The SQLite store's idempotency-Key reservations of messages and uploads.

use super::SqliteStore;
use super::rows::{idempotent_row, parsed};
use async_trait::async_trait;
use chat4all_core::ids::{FileId, IdempotencyKey, UserId};
use chat4all_core::ports::{IdempotencyStore, IdempotentRequest, StoreError};
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn reserve_idempotency_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        request: &IdempotentRequest,
        not_before: i64,
    ) -> Result<IdempotentRequest, StoreError> {
        let (user, key, request) = (user.clone(), key.clone(), request.clone());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO idempotency_keys (user_id, key, fingerprint, message_id, conversation_id, timestamp, appended, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?6)
                 ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, message_id = excluded.message_id,
                     conversation_id = excluded.conversation_id, timestamp = excluded.timestamp, appended = 0,
                     created_at = excluded.created_at
                 WHERE idempotency_keys.created_at < ?7",
            )?
            .execute(params![
                user.as_str(),
                key.as_str(),
                request.fingerprint,
                request.message_id.as_str(),
                request.conversation_id.as_str(),
                request.timestamp,
                not_before
            ])?;
            let in_force = conn
                .prepare_cached(
                    "SELECT fingerprint, message_id, conversation_id, timestamp, appended FROM idempotency_keys
                     WHERE user_id = ?1 AND key = ?2",
                )?
                .query_row([user.as_str(), key.as_str()], idempotent_row)?;
            Ok(in_force)
        })
        .await
    }

    async fn idempotent_request(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        not_before: i64,
    ) -> Result<Option<IdempotentRequest>, StoreError> {
        let (user, key) = (user.clone(), key.clone());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT fingerprint, message_id, conversation_id, timestamp, appended FROM idempotency_keys
                 WHERE user_id = ?1 AND key = ?2 AND created_at >= ?3",
            )?
            .query_row(params![user.as_str(), key.as_str(), not_before], idempotent_row)
            .optional()
        })
        .await
    }

    async fn mark_idempotency_key_appended(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<(), StoreError> {
        let (user, key) = (user.clone(), key.clone());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE idempotency_keys SET appended = 1 WHERE user_id = ?1 AND key = ?2",
            )?
            .execute([user.as_str(), key.as_str()])
            .map(drop)
        })
        .await
    }

    async fn reserve_file_idempotency_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        fingerprint: &str,
        file_id: &FileId,
        not_before: i64,
    ) -> Result<(String, FileId), StoreError> {
        let (user, key, fingerprint, file_id) = (
            user.clone(),
            key.clone(),
            fingerprint.to_owned(),
            file_id.clone(),
        );
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO file_idempotency_keys (user_id, key, fingerprint, file_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, file_id = excluded.file_id,
                     created_at = excluded.created_at
                 WHERE file_idempotency_keys.created_at < ?6",
            )?
            .execute(params![user.as_str(), key.as_str(), fingerprint, file_id.as_str(), chat4all_core::time::now_millis(), not_before])?;
            let in_force = conn
                .prepare_cached("SELECT fingerprint, file_id FROM file_idempotency_keys WHERE user_id = ?1 AND key = ?2")?
                .query_row([user.as_str(), key.as_str()], |row| Ok((row.get(0)?, parsed(row, 1)?)))?;
            Ok(in_force)
        })
        .await
    }

    async fn purge_idempotency_keys(&self, before: i64) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let messages = conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                [before],
            )?;
            let files = conn.execute(
                "DELETE FROM file_idempotency_keys WHERE created_at < ?1",
                [before],
            )?;
            Ok((messages + files) as u64)
        })
        .await
    }
}

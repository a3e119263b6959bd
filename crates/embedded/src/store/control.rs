//! The SQLite store's control documents shared between roles.

use super::SqliteStore;
use async_trait::async_trait;
use chat4all_core::ports::{ControlStore, StoreError};
use rusqlite::params;

#[async_trait]
impl ControlStore for SqliteStore {
    async fn put_control(&self, key: &str, value: &str, expires_at: i64) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO controls (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            )?
            .execute(params![key, value, expires_at])
            .map(drop)
        })
        .await
    }

    async fn controls(&self, prefix: &str, now: i64) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT key, value FROM controls WHERE substr(key, 1, length(?1)) = ?1 AND expires_at > ?2 ORDER BY key",
            )?
            .query_map(params![prefix, now], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
        .await
    }
}

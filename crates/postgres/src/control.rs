//! The PostgreSQL store's control documents shared between roles.

use crate::PostgresStore;
use crate::error::Error;
use async_trait::async_trait;
use chat4all_core::ports::{ControlStore, StoreError};

#[async_trait]
impl ControlStore for PostgresStore {
    async fn put_control(&self, key: &str, value: &str, expires_at: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO controls (control_key, control_value, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (control_key) DO UPDATE SET control_value = excluded.control_value,
                     expires_at = excluded.expires_at",
                &[&key, &value, &expires_at],
            )
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn controls(&self, prefix: &str, now: i64) -> Result<Vec<(String, String)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT control_key, control_value FROM controls
                 WHERE substr(control_key, 1, length($1)) = $1 AND expires_at > $2",
                &[&prefix, &now],
            )
            .await
            .map_err(Error::from)?;
        let mut found: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        // By key in byte order, whatever the database's collation.
        found.sort_unstable();
        Ok(found)
    }
}

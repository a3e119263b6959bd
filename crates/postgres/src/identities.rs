//! The PostgreSQL store's identities of users on external channels.

use crate::PostgresStore;
use crate::error::Error;
use crate::rows::{all, parsed};
use async_trait::async_trait;
use chat4all_core::ids::UserId;
use chat4all_core::model::Identity;
use chat4all_core::ports::{IdentityStore, Linked, StoreError};
use tokio_postgres::Row;

const COLUMNS: &str = "user_id, platform, value, verified, preferred, linked_at";

fn identity_row(row: &Row) -> Result<Identity, Error> {
    Ok(Identity {
        user_id: parsed(row, 0)?,
        platform: row.try_get(1)?,
        value: row.try_get(2)?,
        verified: row.try_get(3)?,
        preferred: row.try_get(4)?,
        linked_at: row.try_get(5)?,
    })
}

/// Oldest first (ties by platform and value, in byte order whatever the collation).
fn sorted(mut identities: Vec<Identity>) -> Vec<Identity> {
    identities.sort_by(|a, b| {
        (a.linked_at, &a.platform, &a.value).cmp(&(b.linked_at, &b.platform, &b.value))
    });
    identities
}

#[async_trait]
impl IdentityStore for PostgresStore {
    async fn link_identity(
        &self,
        identity: &Identity,
        update_preferred: bool,
    ) -> Result<Linked, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(Error::from)?;
        let user = identity.user_id.as_str();
        // The user's identities are locked first, so two links of one user run one after the other.
        tx.query(
            "SELECT 1 FROM identities WHERE user_id = $1 FOR UPDATE",
            &[&user],
        )
        .await
        .map_err(Error::from)?;
        let created = tx
            .execute(
                &format!(
                    "INSERT INTO identities ({COLUMNS}) VALUES ($1, $2, $3, $4, FALSE, $5)
                     ON CONFLICT (platform, value) DO NOTHING"
                ),
                &[
                    &user,
                    &identity.platform,
                    &identity.value,
                    &identity.verified,
                    &identity.linked_at,
                ],
            )
            .await
            .map_err(Error::from)?
            == 1;
        let held = tx
            .query_one(
                &format!(
                    "SELECT {COLUMNS} FROM identities WHERE platform = $1 AND value = $2 FOR UPDATE"
                ),
                &[&identity.platform, &identity.value],
            )
            .await
            .map_err(Error::from)?;
        let mut linked = identity_row(&held)?;
        if linked.user_id != identity.user_id {
            return Err(StoreError::Conflict("identity".into()));
        }
        if (created || update_preferred) && identity.preferred != linked.preferred {
            if identity.preferred {
                tx.execute(
                    "UPDATE identities SET preferred = FALSE WHERE user_id = $1 AND preferred",
                    &[&user],
                )
                .await
                .map_err(Error::from)?;
            }
            tx.execute(
                "UPDATE identities SET preferred = $3 WHERE platform = $1 AND value = $2",
                &[&linked.platform, &linked.value, &identity.preferred],
            )
            .await
            .map_err(Error::from)?;
            linked.preferred = identity.preferred;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(if created {
            Linked::Created(linked)
        } else {
            Linked::Existing(linked)
        })
    }

    async fn identities(&self, user_id: &UserId) -> Result<Vec<Identity>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {COLUMNS} FROM identities WHERE user_id = $1"),
                &[&user_id.as_str()],
            )
            .await
            .map_err(Error::from)?;
        Ok(sorted(all(&rows, identity_row)?))
    }

    async fn preferred_identities(&self, user_ids: &[UserId]) -> Result<Vec<Identity>, StoreError> {
        self.for_keys(
            &format!("SELECT {COLUMNS} FROM identities WHERE preferred AND user_id = ANY($1)"),
            user_ids,
            identity_row,
        )
        .await
    }

    async fn unlink_identity(
        &self,
        user_id: &UserId,
        platform: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                "DELETE FROM identities WHERE platform = $1 AND value = $2 AND user_id = $3",
                &[&platform, &value, &user_id.as_str()],
            )
            .await
            .map_err(Error::from)?;
        Ok(deleted > 0)
    }
}

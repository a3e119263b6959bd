//! The SQLite store's identities of users on external channels.

use super::SqliteStore;
use super::rows::{parsed, rows_in};
use async_trait::async_trait;
use chat4all_core::ids::UserId;
use chat4all_core::model::Identity;
use chat4all_core::ports::{IdentityStore, Linked, StoreError};
use rusqlite::{Connection, OptionalExtension, Row, params};

const COLUMNS: &str = "user_id, platform, value, verified, preferred, linked_at";

fn identity_row(row: &Row<'_>) -> rusqlite::Result<Identity> {
    Ok(Identity {
        user_id: parsed(row, 0)?,
        platform: row.get(1)?,
        value: row.get(2)?,
        verified: row.get(3)?,
        preferred: row.get(4)?,
        linked_at: row.get(5)?,
    })
}

fn find(conn: &Connection, platform: &str, value: &str) -> rusqlite::Result<Option<Identity>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM identities WHERE platform = ?1 AND value = ?2"
    ))?
    .query_row(params![platform, value], identity_row)
    .optional()
}

/// Oldest first; sorted here, since SQLite re-plans a statement whose ORDER BY meets bound parameters.
fn sorted(mut identities: Vec<Identity>) -> Vec<Identity> {
    identities.sort_by(|a, b| {
        (a.linked_at, &a.platform, &a.value).cmp(&(b.linked_at, &b.platform, &b.value))
    });
    identities
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn link_identity(
        &self,
        identity: &Identity,
        update_preferred: bool,
    ) -> Result<Linked, StoreError> {
        let identity = identity.clone();
        self.write(move |conn| {
            let held = find(conn, &identity.platform, &identity.value)?;
            let (mut linked, created) = match held {
                Some(held) if held.user_id != identity.user_id => return Ok(None),
                Some(held) => (held, false),
                None => (
                    Identity {
                        preferred: false,
                        ..identity.clone()
                    },
                    true,
                ),
            };
            if created {
                conn.execute(
                    &format!("INSERT INTO identities ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, 0, ?5)"),
                    params![
                        linked.user_id.as_str(),
                        linked.platform,
                        linked.value,
                        linked.verified,
                        linked.linked_at
                    ],
                )?;
            }
            if (created || update_preferred) && identity.preferred != linked.preferred {
                if identity.preferred {
                    conn.execute(
                        "UPDATE identities SET preferred = 0 WHERE user_id = ?1 AND preferred = 1",
                        [linked.user_id.as_str()],
                    )?;
                }
                conn.execute(
                    "UPDATE identities SET preferred = ?3 WHERE platform = ?1 AND value = ?2",
                    params![linked.platform, linked.value, identity.preferred],
                )?;
                linked.preferred = identity.preferred;
            }
            Ok(Some(if created {
                Linked::Created(linked)
            } else {
                Linked::Existing(linked)
            }))
        })
        .await?
        .ok_or_else(|| StoreError::Conflict("identity".into()))
    }

    async fn identities(&self, user_id: &UserId) -> Result<Vec<Identity>, StoreError> {
        let user = user_id.as_str().to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM identities WHERE user_id = ?1"
            ))?
            .query_map([user], identity_row)?
            .collect()
        })
        .await
        .map(sorted)
    }

    async fn preferred_identities(&self, user_ids: &[UserId]) -> Result<Vec<Identity>, StoreError> {
        let ids: Vec<String> = user_ids.iter().map(|u| u.as_str().to_owned()).collect();
        self.read(move |conn| {
            let query =
                format!("SELECT {COLUMNS} FROM identities WHERE preferred = 1 AND user_id IN");
            rows_in(conn, &query, &ids, identity_row)
        })
        .await
    }

    async fn unlink_identity(
        &self,
        user_id: &UserId,
        platform: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let (user, platform, value) = (
            user_id.as_str().to_owned(),
            platform.to_owned(),
            value.to_owned(),
        );
        self.write(move |conn| {
            conn.prepare_cached(
                "DELETE FROM identities WHERE platform = ?1 AND value = ?2 AND user_id = ?3",
            )?
            .execute(params![platform, value, user])
            .map(|deleted| deleted > 0)
        })
        .await
    }
}

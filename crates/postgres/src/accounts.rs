//! The PostgreSQL store's users and their credentials.

use crate::PostgresStore;
use crate::error::Error;
use crate::rows::{parsed, user_row};
use async_trait::async_trait;
use chat4all_core::ids::{Email, UserId, Username};
use chat4all_core::model::{User, UserCredentials};
use chat4all_core::ports::{AccountStore, StoreError};

#[async_trait]
impl AccountStore for PostgresStore {
    async fn insert_user(&self, user: &User, password_hash: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        // A unique violation names its constraint, which the error mapping turns into the field.
        client
            .execute(
                "INSERT INTO users (user_id, username, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &user.user_id.as_str(),
                    &user.username.as_str(),
                    &user.email.as_ref().map(Email::as_str),
                    &password_hash,
                    &user.created_at,
                ],
            )
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn user_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<UserCredentials>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT user_id, username, email, created_at, password_hash FROM users WHERE username = $1",
                &[&username.as_str()],
            )
            .await
            .map_err(Error::from)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(UserCredentials {
            user: user_row(&row)?,
            password_hash: row.try_get(4).map_err(Error::from)?,
        }))
    }

    async fn existing_users(&self, user_ids: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        self.for_keys(
            "SELECT user_id FROM users WHERE user_id = ANY($1)",
            user_ids,
            |r| parsed(r, 0),
        )
        .await
    }

    async fn users(&self, user_ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        self.for_keys(
            "SELECT user_id, username, email, created_at FROM users WHERE user_id = ANY($1)",
            user_ids,
            user_row,
        )
        .await
    }
}

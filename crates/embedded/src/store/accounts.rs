//! The SQLite store's users and their credentials.

use super::SqliteStore;
use super::rows::{parsed, rows_in, user_row};
use async_trait::async_trait;
use chat4all_core::ids::{Email, UserId, Username};
use chat4all_core::model::{User, UserCredentials};
use chat4all_core::ports::{AccountStore, StoreError};
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl AccountStore for SqliteStore {
    async fn insert_user(&self, user: &User, password_hash: &str) -> Result<(), StoreError> {
        let user = user.clone();
        let hash = password_hash.to_owned();
        self.write(move |conn| {
            let taken: Option<String> = conn
                .query_row(
                    "SELECT CASE WHEN username = ?1 THEN 'username' ELSE 'email' END FROM users
                     WHERE username = ?1 OR (?2 IS NOT NULL AND email = ?2) LIMIT 1",
                    params![user.username.as_str(), user.email.as_ref().map(Email::as_str)],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(field) = taken {
                return Ok(Some(field));
            }
            conn.execute(
                "INSERT INTO users (user_id, username, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user.user_id.as_str(), user.username.as_str(), user.email.as_ref().map(Email::as_str), hash, user.created_at],
            )?;
            Ok(None)
        })
        .await?
        .map_or(Ok(()), |field| Err(StoreError::Conflict(field)))
    }

    async fn user_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<UserCredentials>, StoreError> {
        let username = username.clone();
        self.read(move |conn| {
            conn.prepare_cached("SELECT user_id, username, email, created_at, password_hash FROM users WHERE username = ?1")?
                .query_row([username.as_str()], |row| Ok(UserCredentials { user: user_row(row)?, password_hash: row.get(4)? }))
                .optional()
        })
        .await
    }

    async fn existing_users(&self, user_ids: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        let ids: Vec<String> = user_ids.iter().map(|u| u.as_str().to_owned()).collect();
        self.read(move |conn| {
            rows_in(
                conn,
                "SELECT user_id FROM users WHERE user_id IN",
                &ids,
                |row| parsed(row, 0),
            )
        })
        .await
    }

    async fn users(&self, user_ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        let ids: Vec<String> = user_ids.iter().map(|u| u.as_str().to_owned()).collect();
        self.read(move |conn| {
            rows_in(
                conn,
                "SELECT user_id, username, email, created_at FROM users WHERE user_id IN",
                &ids,
                user_row,
            )
        })
        .await
    }
}

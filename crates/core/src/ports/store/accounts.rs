//! Users and their credentials.

use super::{Backend, StoreError};
use crate::ids::{UserId, Username};
use crate::model::{User, UserCredentials};
use async_trait::async_trait;

/// Users and their credentials.
#[async_trait]
pub trait AccountStore: Backend {
    /// Adds a user; `Conflict` names `username` or `email` when taken.
    async fn insert_user(&self, user: &User, password_hash: &str) -> Result<(), StoreError>;

    /// A user and their password hash, for login.
    async fn user_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<UserCredentials>, StoreError>;

    /// Which of `user_ids` exist.
    async fn existing_users(&self, user_ids: &[UserId]) -> Result<Vec<UserId>, StoreError>;

    /// The users among `user_ids` that exist, in no particular order.
    async fn users(&self, user_ids: &[UserId]) -> Result<Vec<User>, StoreError>;
}

//! Users' identities on external channels.

use super::{Backend, StoreError};
use crate::ids::UserId;
use crate::model::Identity;
use async_trait::async_trait;

/// What linking an identity did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linked {
    /// A new identity, as stored.
    Created(Identity),
    /// The user already held it: the stored one, its `preferred` flag updated as asked.
    Existing(Identity),
}

/// Users' identities on external channels. `(platform, value)` is unique across users, and a user has at most one
/// preferred identity: both rules hold under concurrent writes.
#[async_trait]
pub trait IdentityStore: Backend {
    /// Links `identity` to its user; `Conflict` when another user holds it. When the user already holds it, keeps
    /// its `linked_at`, and takes `identity.preferred` only when `update_preferred`. Making one preferred unsets the
    /// user's other preferred identity in the same write.
    async fn link_identity(
        &self,
        identity: &Identity,
        update_preferred: bool,
    ) -> Result<Linked, StoreError>;

    /// The user's identities, oldest first.
    async fn identities(&self, user_id: &UserId) -> Result<Vec<Identity>, StoreError>;

    /// The preferred identity of each of `user_ids` that has one.
    async fn preferred_identities(&self, user_ids: &[UserId]) -> Result<Vec<Identity>, StoreError>;

    /// Removes the user's identity; false when they hold no such identity.
    async fn unlink_identity(
        &self,
        user_id: &UserId,
        platform: &str,
        value: &str,
    ) -> Result<bool, StoreError>;
}

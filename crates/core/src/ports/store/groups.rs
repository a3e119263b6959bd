//! What a group has beyond its conversation: description, admins, a member cap, and membership changes.

use super::{Backend, StoreError};
use crate::ids::{ConversationId, UserId};
use crate::model::Group;
use async_trait::async_trait;

/// One membership change of a group, saved whole or not at all: valid only while the group is still at
/// `from_version` (compare-and-set), so that two admins racing cannot both decide from the same membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipChange {
    /// The group.
    pub group_id: ConversationId,
    /// The version the change was decided from.
    pub from_version: u64,
    /// A member to add, with their join time (ms).
    pub joined: Option<(UserId, i64)>,
    /// A member to remove.
    pub left: Option<UserId>,
    /// The admins after the change.
    pub admins: Vec<UserId>,
}

/// Groups: their details and membership changes.
#[async_trait]
pub trait GroupStore: Backend {
    /// Adds a group: its conversation, members, details and admins, in one transaction; false when the id is
    /// taken (nothing changes then). The stored version starts at `group.version`.
    async fn insert_group(&self, group: &Group) -> Result<bool, StoreError>;

    /// A group, with its members in join order; `None` when no group has this id.
    async fn group(&self, id: &ConversationId) -> Result<Option<Group>, StoreError>;

    /// Saves a membership change in one transaction and bumps the version; false when the group is no longer
    /// at `from_version` (nothing changes then).
    async fn save_membership(&self, change: &MembershipChange) -> Result<bool, StoreError>;
}

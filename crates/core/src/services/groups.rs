//! Groups: conversations of type group with admins, a description and a member cap. Admins add, remove and
//! promote members; any member may leave; nobody else may remove the creator; when the last admin leaves, the
//! oldest remaining member becomes admin. Each change is decided from the group as loaded and saved by one
//! compare-and-set write, so a change raced by another is decided again rather than lost.

use super::conversations::{MAX_NAME_CHARS, ensure_users_exist, trimmed, with_creator};
use crate::error::ServiceError;
use crate::ids::{ConversationId, UserId};
use crate::model::{Conversation, ConversationKind, Group};
use crate::ports::{MembershipChange, Stores};
use crate::time::now_millis;

/// Longest group description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// Compare-and-set attempts before a change is given up as contended (503).
const MAX_ROUNDS: usize = 5;

/// A request to create a group.
#[derive(Debug, Clone, Default)]
pub struct NewGroup {
    /// Display name (required).
    pub name: Option<String>,
    /// Optional free text.
    pub description: Option<String>,
    /// Members besides the creator, who is always one (and the first admin).
    pub members: Vec<String>,
}

/// A membership change a caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Add a member (admins only).
    Add(UserId),
    /// Remove a member (admins), or leave (the member themselves).
    Remove(UserId),
    /// Make a member admin (admins only).
    Promote(UserId),
}

/// What a membership request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The group after the request.
    pub group: Group,
    /// False when nothing had to change (already a member, already an admin).
    pub changed: bool,
    /// The member who became admin because the last admin left.
    pub handed_over_to: Option<UserId>,
}

/// The group use cases.
#[derive(Clone)]
pub struct Groups {
    stores: Stores,
    max_members: u32,
}

impl Groups {
    /// Groups over `stores`, each capped at `max_members`.
    pub fn new(stores: &Stores, max_members: u32) -> Self {
        Self {
            stores: stores.clone(),
            max_members,
        }
    }

    /// Creates a group with `creator` as its first admin: 400 on a bad field or an unknown member, 422 beyond the
    /// member cap.
    pub async fn create(&self, creator: &UserId, request: NewGroup) -> Result<Group, ServiceError> {
        let name = trimmed("name", request.name, MAX_NAME_CHARS)?
            .ok_or_else(|| ServiceError::Invalid("name is required".into()))?;
        let description = trimmed("description", request.description, MAX_DESCRIPTION_CHARS)?;
        let members = with_creator(creator, request.members)?;
        if members.len() > self.max_members as usize {
            return Err(ServiceError::Unprocessable(format!(
                "a group has at most {} members; {} were given, the creator included",
                self.max_members,
                members.len()
            )));
        }
        ensure_users_exist(&self.stores, &members).await?;
        let group = Group {
            conversation: Conversation {
                conversation_id: ConversationId::generate(),
                kind: ConversationKind::Group,
                name: Some(name),
                members,
                created_at: now_millis(),
                created_by: creator.clone(),
            },
            description,
            admins: vec![creator.clone()],
            max_members: self.max_members,
            version: 0,
        };
        if !self.stores.groups.insert_group(&group).await? {
            return Err(ServiceError::Conflict(format!(
                "group {} already exists",
                group.conversation.conversation_id
            )));
        }
        Ok(group)
    }

    /// The group, for a member; 404 otherwise (a group someone is not in answers like a missing one).
    pub async fn get(&self, caller: &UserId, id: &str) -> Result<Group, ServiceError> {
        let not_found = || ServiceError::NotFound(format!("group {id} not found"));
        let id = ConversationId::parse(id).map_err(|_| not_found())?;
        self.stores
            .groups
            .group(&id)
            .await?
            .filter(|g| g.conversation.members.contains(caller))
            .ok_or_else(not_found)
    }

    /// Applies `action` for `caller`: 404 when the caller cannot see the group, 403 when the rules forbid it,
    /// 409 when the group is full, 400 for an unknown user.
    pub async fn change(
        &self,
        caller: &UserId,
        id: &str,
        action: Action,
    ) -> Result<Outcome, ServiceError> {
        let mut known_user = false;
        for _ in 0..MAX_ROUNDS {
            let group = self.get(caller, id).await?;
            let Some(change) = decide(&group, caller, &action, now_millis())? else {
                return Ok(Outcome {
                    group,
                    changed: false,
                    handed_over_to: None,
                });
            };
            if let (Some((user, _)), false) = (&change.joined, known_user) {
                ensure_users_exist(&self.stores, std::slice::from_ref(user)).await?;
                known_user = true;
            }
            if self.stores.groups.save_membership(&change).await? {
                return Ok(outcome(group, change, &action));
            }
        }
        Err(ServiceError::Unavailable(
            "the group kept changing under this request; try again".into(),
        ))
    }
}

/// The change `action` makes to `group`, `None` when there is nothing to change, or why it is refused.
fn decide(
    group: &Group,
    caller: &UserId,
    action: &Action,
    now: i64,
) -> Result<Option<MembershipChange>, ServiceError> {
    let members = &group.conversation.members;
    let id = &group.conversation.conversation_id;
    let only_admins = |what: &str| match group.admins.contains(caller) {
        true => Ok(()),
        false => Err(ServiceError::Forbidden(format!(
            "only the group's admins may {what}"
        ))),
    };
    let not_member = |user: &UserId| format!("user {user} is not a member of group {id}");
    let mut change = MembershipChange {
        group_id: id.clone(),
        from_version: group.version,
        joined: None,
        left: None,
        admins: group.admins.clone(),
    };
    match action {
        Action::Add(user) => {
            only_admins("add members")?;
            if members.contains(user) {
                return Ok(None);
            }
            if members.len() >= group.max_members as usize {
                return Err(ServiceError::Conflict(format!(
                    "group {id} is full ({} members)",
                    group.max_members
                )));
            }
            change.joined = Some((user.clone(), now));
        }
        Action::Remove(user) => {
            if user != caller {
                only_admins("remove other members")?;
                if *user == group.conversation.created_by {
                    return Err(ServiceError::Forbidden(
                        "the group's creator can only leave, not be removed".into(),
                    ));
                }
            }
            if !members.contains(user) {
                return Err(ServiceError::NotFound(not_member(user)));
            }
            change.admins.retain(|a| a != user);
            if change.admins.is_empty()
                && let Some(oldest) = members.iter().find(|m| *m != user)
            {
                change.admins.push(oldest.clone());
            }
            change.left = Some(user.clone());
        }
        Action::Promote(user) => {
            only_admins("promote members")?;
            if !members.contains(user) {
                return Err(ServiceError::Unprocessable(not_member(user)));
            }
            if group.admins.contains(user) {
                return Ok(None);
            }
            change.admins.push(user.clone());
        }
    }
    Ok(Some(change))
}

/// `group` after the saved `change`.
fn outcome(mut group: Group, change: MembershipChange, action: &Action) -> Outcome {
    let members = &mut group.conversation.members;
    if let Some((user, _)) = change.joined {
        members.push(user);
    }
    if let Some(user) = &change.left {
        members.retain(|m| m != user);
    }
    let handed_over_to = match action {
        Action::Remove(_) => change
            .admins
            .iter()
            .find(|a| !group.admins.contains(a))
            .cloned(),
        _ => None,
    };
    group.admins = change.admins;
    group.admins.sort_unstable();
    group.version += 1;
    Outcome {
        group,
        changed: true,
        handed_over_to,
    }
}

#[cfg(test)]
mod tests;

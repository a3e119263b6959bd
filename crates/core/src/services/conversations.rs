//! Conversations and the membership rule: only members may post to or read a conversation.

use crate::error::ServiceError;
use crate::ids::{ConversationId, UserId};
use crate::model::{Conversation, ConversationKind, Reading};
use crate::ports::{ConversationCursor, Stores};
use crate::time::now_millis;
use std::collections::HashSet;

/// Largest conversation, in members.
pub const MAX_MEMBERS: usize = 256;
/// Longest conversation name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Largest page of a user's conversations.
pub const MAX_PAGE: u32 = 100;

/// A page of a user's conversations, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationPage {
    /// The conversations, each with where the caller stands in it (for unread counts).
    pub conversations: Vec<(Conversation, Reading)>,
    /// Where the next page starts, when there is one (opaque to clients).
    pub next_cursor: Option<String>,
}

/// A request to create a conversation.
#[derive(Debug, Clone)]
pub struct NewConversation {
    /// The id to use; generated when absent.
    pub conversation_id: Option<String>,
    /// Direct or group.
    pub kind: ConversationKind,
    /// Members besides the creator (the creator is always added).
    pub members: Vec<String>,
    /// Optional display name.
    pub name: Option<String>,
}

/// Creates conversations and enforces membership.
#[derive(Clone)]
pub struct Conversations {
    stores: Stores,
}

impl Conversations {
    /// Conversations backed by `store`.
    pub fn new(stores: &Stores) -> Self {
        Self {
            stores: stores.clone(),
        }
    }

    /// Creates a conversation owned by `creator`: 400 on unknown members or a bad shape, 409 when the id is taken.
    pub async fn create(
        &self,
        creator: &UserId,
        request: NewConversation,
    ) -> Result<Conversation, ServiceError> {
        let conversation_id = match request.conversation_id {
            Some(id) => ConversationId::parse(id)?,
            None => ConversationId::generate(),
        };
        let name = trimmed("name", request.name, MAX_NAME_CHARS)?;
        let members = with_creator(creator, request.members)?;
        if members.len() > MAX_MEMBERS {
            return Err(ServiceError::Invalid(format!(
                "a conversation has at most {MAX_MEMBERS} members"
            )));
        }
        if request.kind == ConversationKind::Direct && members.len() != 2 {
            return Err(ServiceError::Invalid(
                "a direct conversation has exactly one other member".into(),
            ));
        }
        ensure_users_exist(&self.stores, &members).await?;
        let conversation = Conversation {
            conversation_id,
            kind: request.kind,
            name,
            members,
            created_at: now_millis(),
            created_by: creator.clone(),
        };
        if !self
            .stores
            .conversations
            .insert_conversation(&conversation)
            .await?
        {
            return Err(ServiceError::Conflict(format!(
                "conversation {} already exists",
                conversation.conversation_id
            )));
        }
        Ok(conversation)
    }

    /// A page of the conversations `user` belongs to, newest first, each with the user's reading position: up
    /// to `limit` (1..=[`MAX_PAGE`]) after `cursor` (a previous page's `next_cursor`).
    pub async fn list(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ConversationPage, ServiceError> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ServiceError::Invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let after = cursor.map(parse_cursor).transpose()?;
        let mut conversations = self
            .stores
            .conversations
            .conversations_of(user, after.as_ref(), limit + 1)
            .await?;
        let more = conversations.len() > limit as usize;
        conversations.truncate(limit as usize);
        let next_cursor = more
            .then(|| conversations.last())
            .flatten()
            .map(|c| format!("{}.{}", c.created_at, c.conversation_id));
        let ids: Vec<ConversationId> = conversations
            .iter()
            .map(|c| c.conversation_id.clone())
            .collect();
        let readings = self.stores.messages.readings(user, &ids).await?;
        if readings.len() != conversations.len() {
            return Err(ServiceError::Internal(format!(
                "the store gave {} readings for {} conversations",
                readings.len(),
                conversations.len()
            )));
        }
        Ok(ConversationPage {
            conversations: conversations.into_iter().zip(readings).collect(),
            next_cursor,
        })
    }

    /// Makes sure `caller` may post to the conversation, creating it on first use (a direct conversation of the
    /// caller and, when it names an existing user, `invited`). In an existing conversation, `invited` must be a
    /// member already.
    pub async fn ensure_member(
        &self,
        id: &ConversationId,
        caller: &UserId,
        invited: Option<&UserId>,
    ) -> Result<(), ServiceError> {
        if let Some(conversation) = self.stores.conversations.conversation(id).await? {
            check_member(&conversation, caller)?;
            return match invited {
                Some(user) if !conversation.members.contains(user) => Err(ServiceError::Invalid(
                    format!("recipient {user} is not a member of conversation {id}"),
                )),
                _ => Ok(()),
            };
        }
        let mut members = vec![caller.clone()];
        if let Some(user) = invited
            && user != caller
            && !self
                .stores
                .accounts
                .existing_users(std::slice::from_ref(user))
                .await?
                .is_empty()
        {
            members.push(user.clone());
        }
        let conversation = Conversation {
            conversation_id: id.clone(),
            kind: ConversationKind::Direct,
            name: None,
            members,
            created_at: now_millis(),
            created_by: caller.clone(),
        };
        if self
            .stores
            .conversations
            .insert_conversation(&conversation)
            .await?
        {
            return Ok(());
        }
        // Someone created it meanwhile: their membership rules apply.
        let conversation = self
            .stores
            .conversations
            .conversation(id)
            .await?
            .ok_or_else(|| ServiceError::Internal("conversation vanished".into()))?;
        check_member(&conversation, caller)
    }

    /// The conversation, if it exists and `user` is a member; `None` otherwise, so that callers can answer a
    /// non-member exactly as they answer a missing conversation.
    pub async fn visible_to(
        &self,
        id: &ConversationId,
        user: &UserId,
    ) -> Result<Option<Conversation>, ServiceError> {
        Ok(self
            .stores
            .conversations
            .conversation(id)
            .await?
            .filter(|c| c.members.contains(user)))
    }

    /// The conversation, if `user` is a member: 404 when it does not exist, 403 when they are not in it.
    pub async fn for_member(
        &self,
        id: &ConversationId,
        user: &UserId,
    ) -> Result<Conversation, ServiceError> {
        let conversation = self
            .stores
            .conversations
            .conversation(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("conversation {id} not found")))?;
        check_member(&conversation, user)?;
        Ok(conversation)
    }
}

/// `text` trimmed, `None` when blank; 400 naming `field` when longer than `max` characters.
pub(super) fn trimmed(
    field: &str,
    text: Option<String>,
    max: usize,
) -> Result<Option<String>, ServiceError> {
    let text = text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    if text.as_ref().is_some_and(|t| t.chars().count() > max) {
        return Err(ServiceError::Invalid(format!(
            "{field} must be at most {max} characters"
        )));
    }
    Ok(text)
}

/// The creator followed by the other members as given, each once; 400 on a malformed id.
pub(super) fn with_creator(
    creator: &UserId,
    others: Vec<String>,
) -> Result<Vec<UserId>, ServiceError> {
    let mut members = vec![creator.clone()];
    let mut seen: HashSet<UserId> = HashSet::from([creator.clone()]);
    for raw in others {
        let id = UserId::parse(raw)?;
        if seen.insert(id.clone()) {
            members.push(id);
        }
    }
    Ok(members)
}

/// 400 naming the first of `users` that is not registered.
pub(super) async fn ensure_users_exist(
    stores: &Stores,
    users: &[UserId],
) -> Result<(), ServiceError> {
    let existing = stores.accounts.existing_users(users).await?;
    match users.iter().find(|u| !existing.contains(u)) {
        Some(unknown) => Err(ServiceError::Invalid(format!("unknown user {unknown}"))),
        None => Ok(()),
    }
}

fn check_member(conversation: &Conversation, caller: &UserId) -> Result<(), ServiceError> {
    if conversation.members.contains(caller) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "you are not a member of this conversation".into(),
        ))
    }
}

/// Reads a `next_cursor`: the creation time, a dot, the conversation id (which may itself hold dots).
fn parse_cursor(cursor: &str) -> Result<ConversationCursor, ServiceError> {
    let invalid =
        || ServiceError::Invalid(format!("cursor {cursor:?} is not one this server gave"));
    let (created_at, id) = cursor.split_once('.').ok_or_else(invalid)?;
    Ok(ConversationCursor {
        created_at: created_at.parse().map_err(|_| invalid())?,
        conversation_id: ConversationId::parse(id).map_err(|_| invalid())?,
    })
}

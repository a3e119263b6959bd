//! Conversations and the membership rule: only members may post to or read a conversation.

use crate::error::ServiceError;
use crate::ids::{ConversationId, UserId};
use crate::model::{Conversation, ConversationKind};
use crate::ports::Store;
use crate::time::now_millis;
use std::sync::Arc;

/// Largest conversation, in members.
pub const MAX_MEMBERS: usize = 256;
/// Longest conversation name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

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
    store: Arc<dyn Store>,
}

impl Conversations {
    /// Conversations backed by `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
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
        let name = request
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        if name
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
        {
            return Err(ServiceError::Invalid(format!(
                "name must be at most {MAX_NAME_CHARS} characters"
            )));
        }
        let mut members = vec![creator.clone()];
        for raw in request.members {
            let id = UserId::parse(raw)?;
            if !members.contains(&id) {
                members.push(id);
            }
        }
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
        let existing = self.store.existing_users(&members).await?;
        if let Some(unknown) = members.iter().find(|m| !existing.contains(m)) {
            return Err(ServiceError::Invalid(format!("unknown user {unknown}")));
        }
        let conversation = Conversation {
            conversation_id,
            kind: request.kind,
            name,
            members,
            created_at: now_millis(),
            created_by: creator.clone(),
        };
        if !self.store.insert_conversation(&conversation).await? {
            return Err(ServiceError::Conflict(format!(
                "conversation {} already exists",
                conversation.conversation_id
            )));
        }
        Ok(conversation)
    }

    /// The conversations `user` belongs to.
    pub async fn list(&self, user: &UserId) -> Result<Vec<Conversation>, ServiceError> {
        Ok(self.store.conversations_of(user).await?)
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
        if let Some(conversation) = self.store.conversation(id).await? {
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
                .store
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
        if self.store.insert_conversation(&conversation).await? {
            return Ok(());
        }
        // Someone created it meanwhile: their membership rules apply.
        let conversation = self
            .store
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
            .store
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
            .store
            .conversation(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("conversation {id} not found")))?;
        check_member(&conversation, user)?;
        Ok(conversation)
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

//! Conversations (members included) kept in memory in front of the store, for the paths that check membership
//! on every message: sending, routing, history. Exact only where every membership change passes through this
//! process, which is why only the embedded store, owned by one process, is opened with it.

use super::{
    Backend, ConversationCursor, ConversationStore, GroupStore, MembershipChange, StoreError,
    Stores,
};
use crate::ids::{ConversationId, UserId};
use crate::model::{Conversation, Group};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Most conversations kept; past it the cache starts over (the next reads refill it).
const CAPACITY: usize = 100_000;

impl Stores {
    /// These stores with conversations read through an in-memory cache, which membership changes made through
    /// them keep exact. Only for a store no other process writes to.
    pub fn with_conversation_cache(mut self) -> Self {
        let cache = Arc::new(Cache::default());
        self.conversations = Arc::new(CachedConversations {
            inner: self.conversations,
            cache: cache.clone(),
        });
        self.groups = Arc::new(CachedGroups {
            inner: self.groups,
            cache,
        });
        self
    }
}

#[derive(Default)]
struct Cache {
    entries: RwLock<Entries>,
}

/// The cached conversations, and how many times any was forgotten: a read that began before a change must not
/// put back what the change made stale, so it fills the cache only if nothing was forgotten meanwhile.
#[derive(Default)]
struct Entries {
    by_id: HashMap<ConversationId, Conversation>,
    generation: u64,
}

impl Cache {
    fn get(&self, id: &ConversationId) -> Result<Conversation, u64> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.by_id.get(id).cloned().ok_or(entries.generation)
    }

    fn fill(&self, read_at: u64, conversation: &Conversation) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.generation != read_at {
            return;
        }
        if entries.by_id.len() >= CAPACITY {
            entries.by_id.clear();
        }
        entries
            .by_id
            .insert(conversation.conversation_id.clone(), conversation.clone());
    }

    fn forget(&self, id: &ConversationId) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.by_id.remove(id);
        entries.generation += 1;
    }
}

struct CachedConversations {
    inner: Arc<dyn ConversationStore>,
    cache: Arc<Cache>,
}

#[async_trait]
impl Backend for CachedConversations {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[async_trait]
impl ConversationStore for CachedConversations {
    async fn insert_conversation(&self, conversation: &Conversation) -> Result<bool, StoreError> {
        self.inner.insert_conversation(conversation).await
    }

    async fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>, StoreError> {
        let read_at = match self.cache.get(id) {
            Ok(cached) => return Ok(Some(cached)),
            Err(generation) => generation,
        };
        let found = self.inner.conversation(id).await?;
        if let Some(conversation) = &found {
            self.cache.fill(read_at, conversation);
        }
        Ok(found)
    }

    async fn conversations_of(
        &self,
        user: &UserId,
        after: Option<&ConversationCursor>,
        limit: u32,
    ) -> Result<Vec<Conversation>, StoreError> {
        self.inner.conversations_of(user, after, limit).await
    }
}

struct CachedGroups {
    inner: Arc<dyn GroupStore>,
    cache: Arc<Cache>,
}

#[async_trait]
impl Backend for CachedGroups {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[async_trait]
impl GroupStore for CachedGroups {
    async fn insert_group(&self, group: &Group) -> Result<bool, StoreError> {
        self.inner.insert_group(group).await
    }

    async fn group(&self, id: &ConversationId) -> Result<Option<Group>, StoreError> {
        self.inner.group(id).await
    }

    async fn save_membership(&self, change: &MembershipChange) -> Result<bool, StoreError> {
        let saved = self.inner.save_membership(change).await;
        // Forgotten even on an error: the change may have been saved before the answer was lost.
        self.cache.forget(&change.group_id);
        saved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConversationKind;
    use std::sync::Mutex;
    use tokio::sync::Notify;

    /// One conversation whose reads can be held between loading the members and answering.
    struct Held {
        members: Mutex<Vec<UserId>>,
        hold: Mutex<bool>,
        loaded: Notify,
        release: Notify,
    }

    impl Held {
        fn conversation(&self, members: Vec<UserId>) -> Conversation {
            Conversation {
                conversation_id: ConversationId::parse("team").unwrap(),
                kind: ConversationKind::Group,
                name: None,
                members,
                created_at: 1,
                created_by: UserId::parse("u_creator").unwrap(),
            }
        }
    }

    #[async_trait]
    impl Backend for Held {
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[async_trait]
    impl ConversationStore for Held {
        async fn insert_conversation(&self, _: &Conversation) -> Result<bool, StoreError> {
            unreachable!()
        }

        async fn conversation(
            &self,
            _: &ConversationId,
        ) -> Result<Option<Conversation>, StoreError> {
            let members = self.members.lock().unwrap().clone();
            if *self.hold.lock().unwrap() {
                self.loaded.notify_one();
                self.release.notified().await;
            }
            Ok(Some(self.conversation(members)))
        }

        async fn conversations_of(
            &self,
            _: &UserId,
            _: Option<&ConversationCursor>,
            _: u32,
        ) -> Result<Vec<Conversation>, StoreError> {
            unreachable!()
        }
    }

    #[async_trait]
    impl GroupStore for Held {
        async fn insert_group(&self, _: &Group) -> Result<bool, StoreError> {
            unreachable!()
        }

        async fn group(&self, _: &ConversationId) -> Result<Option<Group>, StoreError> {
            unreachable!()
        }

        async fn save_membership(&self, change: &MembershipChange) -> Result<bool, StoreError> {
            let mut members = self.members.lock().unwrap();
            members.extend(change.joined.iter().map(|(user, _)| user.clone()));
            members.retain(|m| change.left.as_ref() != Some(m));
            Ok(true)
        }
    }

    fn leaving(user: &UserId) -> MembershipChange {
        MembershipChange {
            group_id: ConversationId::parse("team").unwrap(),
            from_version: 0,
            joined: None,
            left: Some(user.clone()),
            admins: Vec::new(),
        }
    }

    #[tokio::test]
    async fn members_follow_changes_even_when_a_read_overlaps_one() {
        let (ann, bob) = (
            UserId::parse("u_ann").unwrap(),
            UserId::parse("u_bob").unwrap(),
        );
        let held = Arc::new(Held {
            members: Mutex::new(vec![ann.clone(), bob.clone()]),
            hold: Mutex::new(false),
            loaded: Notify::new(),
            release: Notify::new(),
        });
        let cache = Arc::new(Cache::default());
        let conversations = Arc::new(CachedConversations {
            inner: held.clone(),
            cache: cache.clone(),
        });
        let groups = CachedGroups {
            inner: held.clone(),
            cache,
        };
        let id = ConversationId::parse("team").unwrap();
        let members = |c: Option<Conversation>| c.unwrap().members;

        // A read loads the members, then bob leaves before that read answers: it must not cache what it loaded.
        *held.hold.lock().unwrap() = true;
        let reader = conversations.clone();
        let slow = tokio::spawn(async move {
            reader
                .conversation(&ConversationId::parse("team").unwrap())
                .await
        });
        held.loaded.notified().await;
        groups.save_membership(&leaving(&bob)).await.unwrap();
        held.release.notify_one();
        assert_eq!(
            members(slow.await.unwrap().unwrap()),
            [ann.clone(), bob.clone()],
            "the overlapping read answers what it loaded"
        );
        *held.hold.lock().unwrap() = false;
        assert_eq!(
            members(conversations.conversation(&id).await.unwrap()),
            std::slice::from_ref(&ann),
            "the next read does not get the old members from the cache"
        );

        // Now cached: a change made through the cache is seen at once.
        groups.save_membership(&leaving(&ann)).await.unwrap();
        assert!(members(conversations.conversation(&id).await.unwrap()).is_empty());
    }
}

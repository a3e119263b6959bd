//! The store port, one trait per aggregate: accounts, conversations, groups, read receipts, messages, files,
//! idempotency keys, control documents and identities. A store only saves and loads; the rules (state machine, timestamps, implicit conversations,
//! membership) live in the core services. Each aggregate may live in another backend (messages in Cassandra, the
//! rest in PostgreSQL); the embedded store keeps them all in one SQLite file.

mod accounts;
mod control;
mod conversation_cache;
mod conversations;
mod files;
mod groups;
mod idempotency;
mod identities;
mod messages;
mod receipts;

pub use accounts::AccountStore;
pub use control::ControlStore;
pub use conversations::{ConversationCursor, ConversationStore};
pub use files::FileStore;
pub use groups::{GroupStore, MembershipChange};
pub use idempotency::{IdempotencyStore, IdempotentRequest};
pub use identities::{IdentityStore, Linked};
pub use messages::{MessageStore, Recorded, Settle, StatusWrite};
pub use receipts::ReceiptStore;

use async_trait::async_trait;
use futures::future::try_join_all;
use std::sync::Arc;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the text names the field.
    #[error("{0}")]
    Conflict(String),
    /// The backend cannot be reached now.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Any other backend failure.
    #[error("store backend: {0}")]
    Backend(String),
}

/// What every aggregate's backend answers: whether it is reachable.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Cheap liveness check of the backend.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// One backend serving every aggregate.
pub trait Store:
    AccountStore
    + ConversationStore
    + GroupStore
    + ReceiptStore
    + MessageStore
    + FileStore
    + IdempotencyStore
    + ControlStore
    + IdentityStore
{
}

impl<S> Store for S where
    S: AccountStore
        + ConversationStore
        + GroupStore
        + ReceiptStore
        + MessageStore
        + FileStore
        + IdempotencyStore
        + ControlStore
        + IdentityStore
{
}

/// The store of each aggregate, as the services reach them.
#[derive(Clone)]
pub struct Stores {
    /// Users and credentials.
    pub accounts: Arc<dyn AccountStore>,
    /// Conversations and members.
    pub conversations: Arc<dyn ConversationStore>,
    /// Group details and membership changes.
    pub groups: Arc<dyn GroupStore>,
    /// Read receipts.
    pub receipts: Arc<dyn ReceiptStore>,
    /// Messages and their status history.
    pub messages: Arc<dyn MessageStore>,
    /// File metadata and upload sessions.
    pub files: Arc<dyn FileStore>,
    /// Idempotency-Key reservations.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Control documents between roles.
    pub control: Arc<dyn ControlStore>,
    /// Users' identities on external channels.
    pub identities: Arc<dyn IdentityStore>,
}

impl Stores {
    /// Every aggregate in one backend.
    pub fn all_in<S: Store + 'static>(store: Arc<S>) -> Self {
        Self {
            accounts: store.clone(),
            conversations: store.clone(),
            groups: store.clone(),
            receipts: store.clone(),
            messages: store.clone(),
            files: store.clone(),
            idempotency: store.clone(),
            control: store.clone(),
            identities: store,
        }
    }

    /// Pings every aggregate's backend.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let backends: [&dyn Backend; 9] = [
            self.accounts.as_ref(),
            self.conversations.as_ref(),
            self.groups.as_ref(),
            self.receipts.as_ref(),
            self.messages.as_ref(),
            self.files.as_ref(),
            self.idempotency.as_ref(),
            self.control.as_ref(),
            self.identities.as_ref(),
        ];
        try_join_all(backends.map(Backend::ping)).await.map(drop)
    }
}

//! The store port: users, conversations, messages with their status history, and idempotency keys.

use crate::events::MessageAccepted;
use crate::ids::{ConversationId, FileId, IdempotencyKey, MessageId, UploadId, UserId, Username};
use crate::model::{
    Conversation, FileMeta, HistoryPage, HistoryQuery, Message, StatusChange, UploadSession, User,
    UserCredentials,
};
use crate::status::MessageStatus;
use async_trait::async_trait;

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

/// The first answer given to an `Idempotency-Key`, kept so that a repeat gets the same one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRequest {
    /// Canonical form of the request body; a repeat with another body is refused.
    pub fingerprint: String,
    /// The message id handed out the first time.
    pub message_id: MessageId,
    /// The conversation of that message.
    pub conversation_id: ConversationId,
    /// The acceptance time handed out the first time.
    pub timestamp: i64,
    /// Whether the message was appended to the log (a crash between reservation and append leaves it false).
    pub appended: bool,
}

/// What recording one accepted message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant, reason = "nearly every answer is `Stored`")]
pub enum Recorded {
    /// Stored now with the next `seq` of its conversation, or found already stored (then returned as it is).
    Stored(Message),
    /// Its conversation does not exist; nothing was stored.
    NoConversation,
}

/// A status change to save: valid only while the stored message is still in `from`, so that two writers racing
/// on one message cannot both move it (compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusWrite {
    /// The status the change was decided from.
    pub from: MessageStatus,
    /// The message as it is after the change (status, timestamps, reason).
    pub message: Message,
    /// The step to add to its status history.
    pub change: StatusChange,
}

/// Durable state of the messaging domain. It stores and loads; the rules (state machine, timestamps, implicit
/// conversations, membership) live in the core services.
#[async_trait]
pub trait Store: Send + Sync {
    /// Cheap liveness check of the backend.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Adds a user; `Conflict` names `username` or `email` when taken.
    async fn insert_user(&self, user: &User, password_hash: &str) -> Result<(), StoreError>;

    /// A user and their password hash, for login.
    async fn user_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<UserCredentials>, StoreError>;

    /// Which of `user_ids` exist.
    async fn existing_users(&self, user_ids: &[UserId]) -> Result<Vec<UserId>, StoreError>;

    /// Adds a conversation with its members; false when the id is taken (nothing changes then).
    async fn insert_conversation(&self, conversation: &Conversation) -> Result<bool, StoreError>;

    /// A conversation with its members.
    async fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>, StoreError>;

    /// The conversations `user` is a member of, newest first.
    async fn conversations_of(&self, user: &UserId) -> Result<Vec<Conversation>, StoreError>;

    /// Stores accepted messages in order (status SENT, one SENT step in the history), giving each the next `seq`
    /// of its conversation. Idempotent: a message already stored is returned as it is, never duplicated. Returns
    /// one answer per input, in order.
    async fn record_messages(
        &self,
        accepted: &[MessageAccepted],
    ) -> Result<Vec<Recorded>, StoreError>;

    /// Saves status changes in order, in one transaction; returns per change whether it was saved (false when
    /// the message was no longer in `from`).
    async fn save_statuses(&self, writes: &[StatusWrite]) -> Result<Vec<bool>, StoreError>;

    /// One message.
    async fn message(&self, id: &MessageId) -> Result<Option<Message>, StoreError>;

    /// The messages among `ids` that exist, in any order.
    async fn messages(&self, ids: &[MessageId]) -> Result<Vec<Message>, StoreError>;

    /// A message's status changes, oldest first.
    async fn status_history(&self, id: &MessageId) -> Result<Vec<StatusChange>, StoreError>;

    /// A page of a conversation's messages.
    async fn history(
        &self,
        conversation: &ConversationId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError>;

    /// Reserves `key` for `user` with `request`, unless a reservation younger than `not_before` (ms) exists;
    /// returns the reservation in force (the given one when it was new).
    async fn reserve_idempotency_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        request: &IdempotentRequest,
        not_before: i64,
    ) -> Result<IdempotentRequest, StoreError>;

    /// Records that the reserved request's message is on the log.
    async fn mark_idempotency_key_appended(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<(), StoreError>;

    /// Forgets reservations made before `before` (ms), of messages and files; returns how many.
    async fn purge_idempotency_keys(&self, before: i64) -> Result<u64, StoreError>;

    /// Adds a file's metadata.
    async fn insert_file(&self, file: &FileMeta) -> Result<(), StoreError>;

    /// A file's metadata.
    async fn file(&self, id: &FileId) -> Result<Option<FileMeta>, StoreError>;

    /// Reserves an upload's `Idempotency-Key` for `file_id` unless a reservation younger than `not_before` exists;
    /// returns the (fingerprint, file id) in force.
    async fn reserve_file_idempotency_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        fingerprint: &str,
        file_id: &FileId,
        not_before: i64,
    ) -> Result<(String, FileId), StoreError>;

    /// Adds a resumable upload session.
    async fn insert_upload(&self, upload: &UploadSession) -> Result<(), StoreError>;

    /// A resumable upload session.
    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>, StoreError>;

    /// Records that bytes `start..end` of an upload arrived; returns every range present, merged and sorted.
    async fn add_upload_range(
        &self,
        id: &UploadId,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError>;

    /// The byte ranges of an upload that arrived, merged and sorted.
    async fn upload_ranges(&self, id: &UploadId) -> Result<Vec<(u64, u64)>, StoreError>;

    /// Forgets an upload session.
    async fn delete_upload(&self, id: &UploadId) -> Result<(), StoreError>;

    /// Upload sessions that expired before `now` (ms).
    async fn expired_uploads(&self, now: i64) -> Result<Vec<UploadId>, StoreError>;

    /// Sets the control document under `key` (an injected fault, a connector's report), valid until
    /// `expires_at` (ms): how roles that may run in other processes tell each other things.
    async fn put_control(&self, key: &str, value: &str, expires_at: i64) -> Result<(), StoreError>;

    /// The control documents whose key starts with `prefix` and that are still valid at `now` (ms), by key.
    async fn controls(&self, prefix: &str, now: i64) -> Result<Vec<(String, String)>, StoreError>;
}

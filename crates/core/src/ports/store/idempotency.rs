//! `Idempotency-Key` reservations of messages and uploads.

use super::{Backend, StoreError};
use crate::ids::{ConversationId, FileId, IdempotencyKey, MessageId, UserId};
use async_trait::async_trait;

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

/// `Idempotency-Key` reservations of messages and uploads.
#[async_trait]
pub trait IdempotencyStore: Backend {
    /// Reserves `key` for `user` with `request`, unless a reservation younger than `not_before` (ms) exists;
    /// returns the reservation in force (the given one when it was new).
    async fn reserve_idempotency_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        request: &IdempotentRequest,
        not_before: i64,
    ) -> Result<IdempotentRequest, StoreError>;

    /// The reservation of `key` for `user` made at or after `not_before` (ms), if any: a retry is answered from it
    /// before anything is checked again.
    async fn idempotent_request(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        not_before: i64,
    ) -> Result<Option<IdempotentRequest>, StoreError>;

    /// Records that the reserved request's message is on the log.
    async fn mark_idempotency_key_appended(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<(), StoreError>;

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

    /// Forgets reservations made before `before` (ms), of messages and files; returns how many.
    async fn purge_idempotency_keys(&self, before: i64) -> Result<u64, StoreError>;
}

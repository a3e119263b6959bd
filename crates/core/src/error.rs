//! The errors a use case can return; the api maps each kind to one HTTP status.

use crate::ids::InvalidValue;
use crate::ports::{LogError, StoreError};

/// What went wrong in a use case, in terms a client can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed or breaks a rule (400).
    #[error("{0}")]
    Invalid(String),
    /// Missing or wrong credentials (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// The thing does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// It conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The payload is over its limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// Well-formed but not processable, such as a reused Idempotency-Key with another body (422).
    #[error("{0}")]
    Unprocessable(String),
    /// A backend is unavailable (503).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected backend failure (500); the detail is logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<InvalidValue> for ServiceError {
    fn from(e: InvalidValue) -> Self {
        Self::Invalid(e.0)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(what),
            StoreError::Unavailable(why) => Self::Unavailable(why),
            StoreError::Backend(why) => Self::Internal(why),
        }
    }
}

impl From<LogError> for ServiceError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Closed => Self::Unavailable("the event log is shutting down".into()),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

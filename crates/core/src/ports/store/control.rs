//! Control documents shared between roles (see `services::control`).

use super::{Backend, StoreError};
use async_trait::async_trait;

/// Control documents shared between roles.
#[async_trait]
pub trait ControlStore: Backend {
    /// Sets the control document under `key` (an injected fault, a connector's report), valid until
    /// `expires_at` (ms): how roles that may run in other processes tell each other things.
    async fn put_control(&self, key: &str, value: &str, expires_at: i64) -> Result<(), StoreError>;

    /// The control documents whose key starts with `prefix` and that are still valid at `now` (ms), by key.
    async fn controls(&self, prefix: &str, now: i64) -> Result<Vec<(String, String)>, StoreError>;
}

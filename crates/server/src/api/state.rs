//! What every handler can reach.

use super::ops::Health;
use super::tokens::Tokens;
use chat4all_core::services::accounts::Accounts;
use chat4all_core::services::conversations::Conversations;
use chat4all_core::services::files::Files;
use chat4all_core::services::messaging::Messaging;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

/// What every handler can reach, behind one reference count: axum clones the state for every request, so a clone
/// must cost one atomic increment, not one per service.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// The state holding `services`.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services and settings of the api.
pub struct Services {
    /// Registration and login.
    pub accounts: Accounts,
    /// Conversations and membership.
    pub conversations: Conversations,
    /// Sending and reading messages.
    pub messaging: Messaging,
    /// Files and their links.
    pub files: Files,
    /// Access tokens.
    pub tokens: Tokens,
    /// Operator endpoints.
    pub admin: super::admin::Admin,
    /// Per-user request limit.
    pub rate_limit: super::RateLimit,
    /// Failed-login limits.
    pub login_throttle: Arc<super::LoginThrottle>,
    /// Component checks for `/health`.
    pub health: Health,
    /// The Prometheus registry rendered by `/metrics`.
    pub metrics: PrometheusHandle,
    /// Base of links in responses (`https://chat.example.com`): the configured public URL, else the listen
    /// address; never the request's `Host`, which a client controls.
    pub public_url: String,
}

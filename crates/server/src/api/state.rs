//! What every handler can reach.

use super::ops::Health;
use super::tokens::Tokens;
use chat4all_core::services::accounts::Accounts;
use chat4all_core::services::conversations::Conversations;
use chat4all_core::services::files::Files;
use chat4all_core::services::messaging::Messaging;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState {
    /// Registration and login.
    pub accounts: Accounts,
    /// Conversations and membership.
    pub conversations: Conversations,
    /// Sending and reading messages.
    pub messaging: Messaging,
    /// Files and their links.
    pub files: Files,
    /// Access tokens.
    pub tokens: Arc<Tokens>,
    /// Operator endpoints.
    pub admin: Arc<super::admin::Admin>,
    /// Per-user request limit.
    pub rate_limit: super::RateLimit,
    /// Failed-login limits.
    pub login_throttle: Arc<super::LoginThrottle>,
    /// Component checks for `/health`.
    pub health: Arc<Health>,
    /// The Prometheus registry rendered by `/metrics`.
    pub metrics: PrometheusHandle,
    /// Base of links in responses (`https://chat.example.com`): the configured public URL, else the listen
    /// address; never the request's `Host`, which a client controls.
    pub public_url: String,
}

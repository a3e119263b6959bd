//! What every handler can reach.

use super::tokens::Tokens;
use crate::telemetry::heartbeat::LagBoard;
use chat4all_core::ports::{EventLog, Stores};
use chat4all_core::services::accounts::Accounts;
use chat4all_core::services::control::Control;
use chat4all_core::services::conversations::Conversations;
use chat4all_core::services::dead_letters::DeadLetters;
use chat4all_core::services::files::Files;
use chat4all_core::services::groups::Groups;
use chat4all_core::services::identities::Identities;
use chat4all_core::services::messaging::Messaging;
use chat4all_core::services::receipts::Receipts;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;

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
    /// Groups and their membership.
    pub groups: Groups,
    /// Per-participant read receipts.
    pub receipts: Receipts,
    /// Sending and reading messages.
    pub messaging: Messaging,
    /// Users' identities on external channels.
    pub identities: Identities,
    /// Files and their links.
    pub files: Files,
    /// Access tokens.
    pub tokens: Tokens,
    /// Operator endpoints.
    pub admin: Admin,
    /// Per-user request limit.
    pub rate_limit: super::RateLimit,
    /// Failed-login limits.
    pub login_throttle: Arc<super::LoginThrottle>,
    /// What `/health` checks and `/metrics` renders.
    pub ops: Arc<Ops>,
    /// This instance's real-time sockets.
    pub hub: Arc<crate::gateway::Hub>,
    /// Base of links in responses (`https://chat.example.com`): the configured public URL, else the listen
    /// address; never the request's `Host`, which a client controls.
    pub public_url: String,
}

/// What the admin endpoints reach.
pub struct Admin {
    /// Bearer token of the admin endpoints.
    pub token: String,
    /// The configured channels, whose faults may be injected.
    pub channels: Vec<String>,
    /// Where injected faults are put for the connectors.
    pub control: Control,
    /// Dead letters.
    pub dead_letters: DeadLetters,
    /// The event log, for raw injection.
    pub log: Arc<dyn EventLog>,
    /// Validity given to replayed messages.
    pub default_validity: Duration,
}

/// What the operations endpoints reach; every role process serves them, the api within its router.
pub struct Ops {
    /// Component checks for `/health`.
    pub health: Health,
    /// The Prometheus registry rendered by `/metrics`.
    pub metrics: PrometheusHandle,
}

impl axum::extract::FromRef<AppState> for Arc<Ops> {
    fn from_ref(state: &AppState) -> Self {
        state.ops.clone()
    }
}

/// The components `/health` checks.
pub struct Health {
    /// The event log.
    pub log: Arc<dyn EventLog>,
    /// The store.
    pub stores: Stores,
    /// The configured channels, whose connectors' reports `/health` shows.
    pub channels: Vec<String>,
    /// Where the connectors report.
    pub control: Control,
    /// The latest consumer lag.
    pub lag: LagBoard,
    /// Lag above which the consumers are reported lagging.
    pub lag_threshold: u64,
}

//! The api role: the HTTP server with the use cases behind it, and the api's own housekeeping (expired
//! idempotency keys and uploads, idle rate-limit buckets).

use super::{Backends, Tasks};
use crate::api::{self, AppState, Tokens};
use crate::config::Config;
use crate::gateway::{Hub, HubLimits, fanout};
use crate::http_server::{self, ConnectionLimits};
use crate::telemetry::heartbeat::Pulse;
use anyhow::Context;
use chat4all_core::ids::{Password, Username};
use chat4all_core::ports::{IdempotencyStore, ObjectStore};
use chat4all_core::services::accounts::{Accounts, HashingPool};
use chat4all_core::services::changes::Changes;
use chat4all_core::services::control::Control;
use chat4all_core::services::conversations::Conversations;
use chat4all_core::services::dead_letters::DeadLetters;
use chat4all_core::services::files::{Files, LinkSigner};
use chat4all_core::services::groups::Groups;
use chat4all_core::services::identities::Identities;
use chat4all_core::services::messaging::{IDEMPOTENCY_WINDOW_MS, Messaging};
use chat4all_core::services::receipts::Receipts;
use chat4all_core::time::now_millis;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Password hashes that may wait for a free core before `/auth/*` answers 503.
const HASHING_QUEUE: usize = 64;

/// What the api needs beside the shared backends.
pub struct ApiParts {
    /// Object storage for files.
    pub objects: Arc<dyn ObjectStore>,
    /// The HS256 secret of access tokens and download links.
    pub secret: Vec<u8>,
    /// The token of the `/admin` endpoints.
    pub admin_token: String,
    /// What `/health` checks and `/metrics` renders.
    pub ops: Arc<api::Ops>,
}

/// Binds the HTTP listener and starts serving. Returns the bound address and the role's pulse.
pub async fn start(
    tasks: &Tasks,
    backends: &Backends,
    config: &Config,
    parts: ApiParts,
) -> anyhow::Result<(SocketAddr, Pulse)> {
    api::register_metrics();
    let Backends {
        log,
        stores,
        topics,
    } = backends;
    let accounts = Accounts::new(stores, HashingPool::new(cores(), HASHING_QUEUE));
    if config.auth.seed_demo_users {
        seed_demo_users(&accounts).await?;
    }
    let files = Files::new(
        stores,
        parts.objects,
        LinkSigner::new(&parts.secret),
        config.files.limits(),
    );
    let rate_limit = api::RateLimit::per_second(config.auth.rate_limit_per_sec);
    let login_throttle = Arc::new(api::LoginThrottle::per_minute(
        config.auth.login_failures_per_user_per_min,
        config.auth.login_failures_per_address_per_min,
    ));
    {
        let (idempotency, files, rate_limit, login_throttle) = (
            stores.idempotency.clone(),
            files.clone(),
            rate_limit.clone(),
            login_throttle.clone(),
        );
        tasks
            .spawn(move |stop| purge_expired(idempotency, files, rate_limit, login_throttle, stop));
    }

    let listener = TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.addr))?;
    let addr = listener.local_addr()?;
    // Real time: this instance's sockets, fed by its own tail of the applied changes; told to close on shutdown.
    // The tail starts before the listener accepts anything, so no change made through this api is missed.
    let hub = Hub::new(HubLimits::default());
    {
        let tail = log.tail(&topics.notifications).await?;
        let (stores, fed) = (stores.clone(), hub.clone());
        tasks.spawn(move |stop| fanout::run(tail, stores, fed, stop));
        let closing = hub.clone();
        tasks.spawn(move |stop| async move {
            stop.cancelled().await;
            closing.close();
        });
    }
    let identities = Identities::new(stores, config.channels.keys().cloned());
    let state = AppState::new(api::Services {
        accounts,
        conversations: Conversations::new(stores),
        groups: Groups::new(stores, config.groups.max_members),
        receipts: Receipts::new(stores, Changes::new(stores, log.clone(), topics.clone())),
        messaging: Messaging::new(
            stores,
            log.clone(),
            topics.clone(),
            identities.clone(),
            config.delivery.default_validity,
        ),
        identities,
        files,
        tokens: Tokens::new(&parts.secret, config.auth.token_ttl),
        admin: api::Admin {
            token: parts.admin_token,
            channels: config.channels.keys().cloned().collect(),
            control: Control::new(stores),
            dead_letters: DeadLetters::new(log.clone(), topics.clone()),
            log: log.clone(),
            default_validity: config.delivery.default_validity,
        },
        rate_limit,
        login_throttle,
        ops: parts.ops,
        public_url: public_url(config, addr),
        hub,
    });
    let limits = ConnectionLimits {
        max_connections: max_connections(config.http.max_connections),
        header_read_timeout: config.http.header_read_timeout,
        keep_alive_timeout: config.http.keep_alive_timeout,
    };
    let router = api::router(
        state,
        config.http.request_timeout,
        config.http.header_read_timeout,
        config.http.bench_endpoints,
    );
    tasks.spawn(move |stop| http_server::serve(listener, router, limits, stop));
    let pulse = Pulse {
        service: "api",
        channel: None,
        processed: Box::new(|| api::REQUESTS_SERVED.load(Ordering::Relaxed)),
        consumes: Vec::new(),
    };
    Ok((addr, pulse))
}

/// Base of links in responses: the configured public URL, else the listen address (loopback when listening on
/// every interface, with a warning, since clients elsewhere cannot use that link).
fn public_url(config: &Config, listen_addr: SocketAddr) -> String {
    if let Some(url) = &config.http.public_url {
        return url.clone();
    }
    let mut addr = listen_addr;
    if addr.ip().is_unspecified() {
        tracing::warn!(
            %listen_addr,
            "links in responses point at loopback; set --public-url to the address clients use"
        );
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}

/// CPU cores available to this process.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Descriptors kept for files, databases and outbound calls beside the HTTP connections.
const RESERVED_DESCRIPTORS: u64 = 1024;

/// Raises the open-file soft limit to the hard limit, then caps connections at what is left beside the process's
/// other descriptors (at most 50,000), or at `configured` (with a warning when the descriptors cannot hold it).
fn max_connections(configured: Option<usize>) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit; assuming 1024");
            1024
        }
    };
    let room = limit.saturating_sub(RESERVED_DESCRIPTORS).clamp(64, 50_000) as usize;
    let max = configured.unwrap_or(room);
    if max > room {
        tracing::warn!(
            max_connections = max,
            open_file_limit = limit,
            "max-connections is above what the open-file limit leaves room for; accepts may fail first"
        );
    }
    tracing::info!(
        open_file_limit = limit,
        max_connections = max,
        "connection cap"
    );
    max
}

/// Creates the older system's demo accounts (short passwords: never for production).
async fn seed_demo_users(accounts: &Accounts) -> anyhow::Result<()> {
    tracing::warn!(
        "--seed-demo-users: creating user_a/pass_a, user_b/pass_b, user_c/pass_c with WEAK PASSWORDS; do not use in production"
    );
    for (name, password) in [
        ("user_a", "pass_a"),
        ("user_b", "pass_b"),
        ("user_c", "pass_c"),
    ] {
        match accounts
            .register(Username::parse(name)?, Password::unchecked(password), None)
            .await
        {
            Ok(_) | Err(chat4all_core::ServiceError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Hourly: forgets idempotency keys older than their 24 h window, deletes expired resumable uploads, and drops
/// the rate-limit and login-throttle buckets that are full again.
async fn purge_expired(
    idempotency: Arc<dyn IdempotencyStore>,
    files: Files,
    rate_limit: api::RateLimit,
    login_throttle: Arc<api::LoginThrottle>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        match idempotency
            .purge_idempotency_keys(now_millis() - IDEMPOTENCY_WINDOW_MS)
            .await
        {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency keys purged"),
            Err(e) => tracing::warn!(error = %e, "idempotency key purge failed"),
        }
        rate_limit.forget_idle();
        login_throttle.forget_idle();
        match files.purge_expired_uploads().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired resumable uploads deleted"),
            Err(e) => tracing::warn!(error = %e, "expired upload purge failed"),
        }
    }
}

//! The composition root: builds the adapters named by the configuration, the use cases on top of them, the
//! workers and the HTTP server, and shuts them down in order.

use crate::api::{self, AppState, Tokens};
use crate::backends;
use crate::config::Config;
use crate::http_server::{self, ConnectionLimits};
use crate::telemetry;
use crate::telemetry::heartbeat::{self, LagBoard, Pulse};
use crate::workers::{self, Workers};
use anyhow::Context;
use chat4all_connectors::{instagram, whatsapp};
use chat4all_core::events::Topics;
use chat4all_core::ids::{Password, Username};
use chat4all_core::ports::{Channel, EventLog, Store};
use chat4all_core::services::accounts::{Accounts, HashingPool};
use chat4all_core::services::conversations::Conversations;
use chat4all_core::services::dead_letters::DeadLetters;
use chat4all_core::services::delivery::{Delivery, DeliverySettings};
use chat4all_core::services::files::{Files, LinkSigner};
use chat4all_core::services::messaging::{IDEMPOTENCY_WINDOW_MS, Messaging};
use chat4all_core::services::routing::Router;
use chat4all_core::time::now_millis;
use rand::RngCore;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Password hashes that may wait for a free core before `/auth/*` answers 503.
const HASHING_QUEUE: usize = 64;

/// How long in-flight HTTP requests may take to finish at shutdown.
const HTTP_DRAIN: Duration = Duration::from_secs(7);

/// A built, not yet running, Chat4All process with every role.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    connection_limits: ConnectionLimits,
    workers: Workers,
    log: Arc<dyn EventLog>,
    maintenance: CancellationToken,
    _data_dir_lock: std::fs::File,
}

impl Application {
    /// Opens the data directory, starts the workers and binds the HTTP listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let data_dir_lock = lock_data_dir(&config.data_dir)?;
        let metrics = telemetry::metrics(); // installed first, so that every series set from now on is kept
        telemetry::process::init("embedded");
        let log = backends::open_event_log(&config)?;
        api::register_metrics();
        workers::router::register_metrics(log.partition_count());
        let store = backends::open_store(&config)?;
        let objects = backends::open_objects(&config)?;
        let secret = match &config.jwt_secret {
            Some(secret) => secret.clone().into_bytes(),
            None => load_or_create_secret(&config.data_dir.join("jwt-secret"))?,
        };
        let admin_token = match &config.admin_token {
            Some(token) => token.clone(),
            None => {
                String::from_utf8(load_or_create_secret(&config.data_dir.join("admin-token"))?)?
            }
        };

        let topics = Topics::default();
        let accounts = Accounts::new(store.clone(), HashingPool::new(cores(), HASHING_QUEUE));
        if config.seed_demo_users {
            seed_demo_users(&accounts).await?;
        }
        let whatsapp = whatsapp::channel(config.whatsapp);
        let instagram = instagram::channel(config.instagram);
        let faults = HashMap::from([
            (whatsapp::NAME.to_owned(), whatsapp.faults()),
            (instagram::NAME.to_owned(), instagram.faults()),
        ]);
        let channels: [(Arc<dyn Channel>, u32); 2] = [
            (Arc::new(whatsapp), config.whatsapp_rate_per_sec),
            (Arc::new(instagram), config.instagram_rate_per_sec),
        ];
        let channel_names: Vec<String> =
            channels.iter().map(|(c, _)| c.name().to_owned()).collect();

        let mut workers = Workers::new();
        let router = Router::new(store.clone(), log.clone(), topics.clone(), channel_names);
        let routed = Arc::new(AtomicU64::new(0));
        workers::router::start(&mut workers, &log, router, &topics, routed.clone()).await?;
        let router_group = workers::router::GROUP.to_owned();
        let mut pulses = vec![
            Pulse {
                service: "api",
                channel: None,
                processed: Box::new(|| api::REQUESTS_SERVED.load(Ordering::Relaxed)),
                consumes: Vec::new(),
            },
            Pulse {
                service: "router",
                channel: None,
                processed: Box::new(move || routed.load(Ordering::Relaxed)),
                consumes: vec![
                    (router_group.clone(), topics.messages.clone()),
                    (router_group, topics.status_updates.clone()),
                ],
            },
        ];
        let mut connectors = Vec::new();
        for (channel, rate_per_sec) in channels {
            let settings = DeliverySettings {
                rate_per_sec,
                ..config.delivery
            };
            let delivery = Delivery::new(channel, log.clone(), topics.clone(), settings);
            delivery.register_metrics();
            connectors.push(delivery.clone());
            let channel = delivery.channel_name().to_owned();
            pulses.push(Pulse {
                service: "connector",
                consumes: vec![(
                    workers::connector::group(&channel),
                    topics.outbound(&channel),
                )],
                channel: Some(channel),
                processed: {
                    let settled = delivery.settled();
                    Box::new(move || settled.load(Ordering::Relaxed))
                },
            });
            workers::connector::start(&mut workers, &log, delivery, &topics).await?;
        }

        let files = Files::new(
            store.clone(),
            objects,
            LinkSigner::new(&secret),
            config.file_limits,
        );
        let maintenance = CancellationToken::new();
        let lag = LagBoard::default();
        tokio::spawn(heartbeat::run(
            log.clone(),
            pulses,
            lag.clone(),
            config.heartbeat,
            maintenance.clone(),
        ));
        let rate_limit = api::RateLimit::per_second(config.rate_limit_per_sec);
        let login_throttle = Arc::new(api::LoginThrottle::per_minute(
            config.login_failures_per_user_per_min,
            config.login_failures_per_address_per_min,
        ));
        tokio::spawn(purge_expired(
            store.clone(),
            files.clone(),
            rate_limit.clone(),
            login_throttle.clone(),
            maintenance.clone(),
        ));

        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.http_addr))?;
        let public_url = public_url(&config, listener.local_addr()?);
        let connection_limits = ConnectionLimits {
            max_connections: max_connections(config.max_connections),
            header_read_timeout: config.header_read_timeout,
            keep_alive_timeout: config.keep_alive_timeout,
        };
        let closing_log = log.clone();
        let state = AppState::new(api::Services {
            accounts,
            conversations: Conversations::new(store.clone()),
            messaging: Messaging::new(
                store.clone(),
                log.clone(),
                topics.clone(),
                config.default_validity,
            ),
            files,
            tokens: Tokens::new(&secret, config.token_ttl),
            admin: api::admin::Admin {
                token: admin_token,
                faults,
                dead_letters: DeadLetters::new(log.clone(), topics),
                log: log.clone(),
                default_validity: config.default_validity,
            },
            rate_limit,
            login_throttle,
            health: api::ops::Health {
                log,
                store,
                connectors,
                lag,
                lag_threshold: config.lag_threshold,
            },
            metrics,
            public_url,
        });
        Ok(Self {
            listener,
            router: api::router(state, config.request_timeout),
            connection_limits,
            workers,
            log: closing_log,
            maintenance,
            _data_dir_lock: data_dir_lock,
        })
    }

    /// The address the HTTP server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish, stops the workers
    /// after their current batch (committing it) and closes the log.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "chat4all is serving");
        let stop_http = CancellationToken::new();
        let server = tokio::spawn(http_server::serve(
            self.listener,
            self.router,
            self.connection_limits,
            stop_http.clone(),
        ));
        shutdown.await;
        tracing::info!("shutting down: draining HTTP requests");
        stop_http.cancel();
        match tokio::time::timeout(HTTP_DRAIN, server).await {
            Ok(result) => result.context("the HTTP server task failed")?,
            Err(_) => tracing::warn!("in-flight requests did not finish in time; closing them"),
        }
        self.maintenance.cancel();
        self.workers.shutdown().await;
        self.log.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Base of links in responses: the configured public URL, else the listen address (loopback when listening on
/// every interface, with a warning, since clients elsewhere cannot use that link).
fn public_url(config: &Config, listen_addr: SocketAddr) -> String {
    if let Some(url) = &config.public_url {
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

/// Takes an exclusive lock on the data directory, so that two processes never write the same log and store.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "the data directory {} is in use by another chat4all process",
            data_dir.display()
        )
    })?;
    Ok(file)
}

/// Reads a secret kept in the data directory (the JWT secret, the admin token), creating it (owner-only, 32
/// random bytes in hex) on first start.
fn load_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let secret = existing.trim().to_owned();
        anyhow::ensure!(
            secret.len() >= 32,
            "{} holds a secret shorter than 32 bytes",
            path.display()
        );
        return Ok(secret.into_bytes());
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "generated a new secret");
    Ok(secret.into_bytes())
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
    store: Arc<dyn Store>,
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
        match store
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

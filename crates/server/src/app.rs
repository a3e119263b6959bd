//! The composition root: opens the backends the configuration names, starts the roles a process runs on them
//! (every role for `chat4all serve`; one for `chat4all api|router|connector <channel>`), and stops them together.

use crate::api::{Health, Ops};
use crate::backends;
use crate::config::{Config, EventLogBackend, ObjectsBackend, StoreBackend};
use crate::http_server::{self, ConnectionLimits};
use crate::roles::{self, Backends, Tasks};
use crate::telemetry;
use crate::telemetry::heartbeat::LagBoard;
use anyhow::Context;
use chat4all_connectors::FaultSwitch;
use chat4all_core::events::Topics;
use chat4all_core::ports::{Channel, EventLog};
use chat4all_core::services::control::Control;
use rand::RngCore;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long the roles may take to stop at shutdown (in-flight requests, the consumers' last batch).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(7);

/// Connections a router or connector process accepts on its operations listener (health checks, scrapes).
const OPS_CONNECTIONS: usize = 256;

/// The roles a process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Every role in one process (`chat4all serve`): the only one that may use embedded backends.
    All,
    /// The HTTP api with the real-time gateway.
    Api,
    /// The router: routes accepted messages and applies status updates.
    Router,
    /// The connector of one channel.
    Connector(String),
}

impl Role {
    /// Where the role listens unless configured: the older system's ports (8080 api, 8082 router, 8083
    /// WhatsApp, 8084 Instagram), so that its scrape configuration keeps working.
    pub fn default_addr(&self) -> SocketAddr {
        let port = match self {
            Self::All | Self::Api => 8080,
            Self::Router => 8082,
            Self::Connector(channel) if channel == "instagram" => 8084,
            Self::Connector(_) => 8083,
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The role's name in logs, metrics (`mode` of `chat4all_build_info`) and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::All => "embedded",
            Self::Api => "api",
            Self::Router => "router",
            Self::Connector(_) => "connector",
        }
    }

    /// The `service` of this process's log lines that no role module wrote.
    pub fn service(&self) -> &'static str {
        match self {
            Self::All => "chat4all",
            role => role.name(),
        }
    }

    fn runs_api(&self) -> bool {
        matches!(self, Self::All | Self::Api)
    }

    fn runs_router(&self) -> bool {
        matches!(self, Self::All | Self::Router)
    }

    /// The configured channels whose connectors this process runs.
    fn connectors<'a>(&self, config: &'a Config) -> anyhow::Result<Vec<&'a str>> {
        match self {
            Self::All => Ok(config.channels.keys().map(String::as_str).collect()),
            Self::Connector(channel) => match config.channels.get_key_value(channel) {
                Some((name, _)) => Ok(vec![name.as_str()]),
                None => anyhow::bail!(
                    "no channel {channel:?} is configured; configured: {}",
                    config
                        .channels
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            Self::Api | Self::Router => Ok(Vec::new()),
        }
    }

    /// Refuses embedded backends outside `serve`: they live in one process's data directory, so role
    /// processes could neither share them nor see each other's work.
    fn check_backends(&self, config: &Config) -> anyhow::Result<()> {
        if *self == Self::All {
            return Ok(());
        }
        let storage = &config.storage;
        let embedded = [
            matches!(storage.event_log, EventLogBackend::Segments(_)).then_some("--event-log"),
            matches!(storage.store, StoreBackend::Sqlite(_)).then_some("--store"),
        ];
        let embedded: Vec<_> = embedded.into_iter().flatten().collect();
        anyhow::ensure!(
            embedded.is_empty(),
            "chat4all {} shares its backends with the other role processes, but {} {} embedded storage \
             (log://, sqlite://), which belongs to one process; give shared backends (kafka://, postgres://) or run \
             every role in one process with `chat4all serve`",
            self.name(),
            embedded.join(" and "),
            if embedded.len() == 1 { "names" } else { "name" }
        );
        if self.runs_api() && matches!(storage.objects, ObjectsBackend::Directory(_)) {
            tracing::warn!(
                "files are kept in a local directory (file://): other api processes cannot serve them; use s3:// in a cluster"
            );
        }
        Ok(())
    }
}

/// A running Chat4All process with its roles.
pub struct Application {
    addr: SocketAddr,
    tasks: Tasks,
    log: Arc<dyn EventLog>,
    _data_dir_lock: Option<std::fs::File>,
}

impl Application {
    /// Opens the backends and starts `role`'s parts: the router and connector consumers, housekeeping, and the
    /// HTTP listener (the api, or only the operations endpoints for routers and connectors).
    pub async fn build(config: Config, role: Role) -> anyhow::Result<Self> {
        let connectors = role.connectors(&config)?;
        role.check_backends(&config)?;
        let data_dir_lock = match role {
            Role::All => Some(open_data_dir(&config.storage.data_dir)?),
            _ => None,
        };
        let metrics = telemetry::metrics(); // installed first, so that every series set from now on is kept
        telemetry::process::init(role.name());
        let backends = Backends {
            log: backends::open_event_log(&config).await?,
            stores: backends::open_store(&config).await?,
            topics: Topics::default(),
        };

        let mut channels: Vec<(Arc<dyn Channel>, Arc<FaultSwitch>, u32)> = Vec::new();
        for name in &connectors {
            let channel = &config.channels[*name];
            let settings = channel
                .simulation()
                .map_err(|e| anyhow::anyhow!("channels.{name}: {e}"))?;
            let plugin = chat4all_connectors::channel(name, settings)
                .with_context(|| format!("no connector is called {name:?}"))?;
            let faults = plugin.faults();
            channels.push((Arc::new(plugin), faults, channel.rate_per_sec));
        }

        let tasks = Tasks::default();
        let mut pulses = Vec::new();
        if role.runs_router() {
            let names = config.channels.keys().cloned().collect();
            pulses.push(roles::router::start(&tasks, &backends, names).await?);
        }
        for (channel, faults, rate_per_sec) in channels {
            let settings = config.delivery.settings(rate_per_sec);
            pulses
                .push(roles::connector::start(&tasks, &backends, channel, faults, settings).await?);
        }
        let lag = LagBoard::default();
        let shown_channels = match role {
            Role::All | Role::Api => config.channels.keys().cloned().collect(),
            _ => connectors.iter().map(|c| (*c).to_owned()).collect(),
        };
        let ops = Arc::new(Ops {
            health: Health {
                log: backends.log.clone(),
                stores: backends.stores.clone(),
                channels: shown_channels,
                control: Control::new(&backends.stores),
                lag: lag.clone(),
                lag_threshold: config.telemetry.lag_threshold,
            },
            metrics,
        });
        let addr = if role.runs_api() {
            let (secret, admin_token) = secrets(&config)?;
            let api = roles::api::ApiParts {
                objects: backends::open_objects(&config).await?,
                secret,
                admin_token,
                ops,
            };
            let (addr, pulse) = roles::api::start(&tasks, &backends, &config, api).await?;
            pulses.insert(0, pulse);
            addr
        } else {
            serve_ops(&tasks, &config, ops).await?
        };
        roles::housekeeping::start(&tasks, &backends, pulses, lag, config.telemetry.heartbeat);
        Ok(Self {
            addr,
            tasks,
            log: backends.log,
            _data_dir_lock: data_dir_lock,
        })
    }

    /// The address the HTTP server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The event log the roles share, for following its streams from outside (an embedded log's live topics,
    /// such as `notifications`, can only be read this way).
    pub fn event_log(&self) -> Arc<dyn EventLog> {
        self.log.clone()
    }

    /// Runs until `shutdown` resolves, then stops every role (the HTTP server after its in-flight requests, the
    /// consumers after their current batch, committed) and closes the log.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.addr, "chat4all is serving");
        shutdown.await;
        tracing::info!("shutting down: draining requests and consumers");
        if !self.tasks.shutdown(SHUTDOWN_GRACE).await {
            tracing::warn!(
                "some tasks did not stop in time; their work is replayed on the next start"
            );
        }
        self.log.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// How far `--check-config` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckDepth {
    /// The configuration and every shared backend it names (reached, pinged, migrated).
    Online,
    /// The configuration alone: for images and compose files checked where their backends do not run.
    Offline,
}

/// `--check-config`: the configuration loaded (its checks passed), the role suits its backends, and (online)
/// each shared backend opens and answers. Embedded backends are not opened, since a running `serve` owns them.
/// Returns one line per finding.
pub async fn check(config: &Config, role: &Role, depth: CheckDepth) -> anyhow::Result<Vec<String>> {
    let connectors = role.connectors(config)?;
    role.check_backends(config)?;
    let mut findings = vec![format!(
        "configuration valid for chat4all {}; listens on {}",
        role.name(),
        config.http.addr
    )];
    for channel in connectors {
        findings.push(format!("channel {channel}: configured"));
    }
    if role.runs_api() {
        secrets_configured(config)?;
    }
    if depth == CheckDepth::Offline {
        findings.push("backends not reached (offline check)".to_owned());
        return Ok(findings);
    }
    let storage = &config.storage;
    if matches!(storage.event_log, EventLogBackend::Segments(_)) {
        findings.push(format!(
            "event log: embedded in {}",
            storage.data_dir.display()
        ));
    } else {
        let log = backends::open_event_log(config).await?;
        log.ping().await.context("the event log does not answer")?;
        findings.push("event log: reachable".to_owned());
        log.close().await;
    }
    if matches!(storage.store, StoreBackend::Sqlite(_)) {
        findings.push(format!("store: embedded in {}", storage.data_dir.display()));
    } else {
        let stores = backends::open_store(config).await?;
        stores.ping().await.context("the store does not answer")?;
        findings.push("store: reachable, schema migrated".to_owned());
    }
    if role.runs_api() {
        if matches!(storage.objects, ObjectsBackend::Directory(_)) {
            findings.push(format!(
                "objects: local directory under {}",
                storage.data_dir.display()
            ));
        } else {
            backends::open_objects(config).await?;
            findings.push("objects: reachable".to_owned());
        }
    }
    Ok(findings)
}

/// Serves `/health`, `/health/live` and `/metrics` of a router or connector process on its own address.
async fn serve_ops(tasks: &Tasks, config: &Config, ops: Arc<Ops>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.addr))?;
    let addr = listener.local_addr()?;
    let limits = ConnectionLimits {
        max_connections: OPS_CONNECTIONS,
        header_read_timeout: config.http.header_read_timeout,
        keep_alive_timeout: config.http.keep_alive_timeout,
    };
    let router = crate::api::ops::router(ops);
    tasks.spawn(move |stop| http_server::serve(listener, router, limits, stop));
    Ok(addr)
}

/// The token secret and the admin token: configured, or (embedded only) generated once into the data
/// directory. Api processes of a cluster must share them, so there they must be configured.
fn secrets(config: &Config) -> anyhow::Result<(Vec<u8>, String)> {
    secrets_configured(config)?;
    let data_dir = &config.storage.data_dir;
    let secret = match &config.auth.jwt_secret {
        Some(secret) => secret.clone().into_bytes(),
        None => load_or_create_secret(&data_dir.join("jwt-secret"))?,
    };
    let admin_token = match &config.auth.admin_token {
        Some(token) => token.clone(),
        None => String::from_utf8(load_or_create_secret(&data_dir.join("admin-token"))?)?,
    };
    Ok((secret, admin_token))
}

/// On a shared store, every api process must be given the same secrets: one generated into a local data
/// directory would make another api's tokens invalid here.
fn secrets_configured(config: &Config) -> anyhow::Result<()> {
    if matches!(config.storage.store, StoreBackend::Sqlite(_)) {
        return Ok(());
    }
    for (value, flag) in [
        (&config.auth.jwt_secret, "jwt-secret"),
        (&config.auth.admin_token, "admin-token"),
    ] {
        anyhow::ensure!(
            value.is_some(),
            "api processes on a shared store must share one --{flag} (CHAT4ALL_{}): set it",
            flag.to_uppercase().replace('-', "_")
        );
    }
    Ok(())
}

/// Creates the data directory of the embedded backends and locks it.
fn open_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    lock_data_dir(data_dir)
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

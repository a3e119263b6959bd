//! The composition root: opens the backends the configuration names, starts every role on them (router,
//! connectors, api, housekeeping), and stops them together.

use crate::backends;
use crate::config::Config;
use crate::roles::{self, Backends, Tasks};
use crate::telemetry;
use crate::telemetry::heartbeat::LagBoard;
use anyhow::Context;
use chat4all_connectors::FaultSwitch;
use chat4all_core::events::Topics;
use chat4all_core::ports::{Channel, EventLog};
use rand::RngCore;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long the roles may take to stop at shutdown (in-flight requests, the consumers' last batch).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(7);

/// A running Chat4All process with every role.
pub struct Application {
    addr: SocketAddr,
    tasks: Tasks,
    log: Arc<dyn EventLog>,
    _data_dir_lock: std::fs::File,
}

impl Application {
    /// Opens the data directory and starts every role: the router and connector consumers, housekeeping, and
    /// the HTTP api on its listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let data_dir = &config.storage.data_dir;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let data_dir_lock = lock_data_dir(data_dir)?;
        let metrics = telemetry::metrics(); // installed first, so that every series set from now on is kept
        telemetry::process::init("embedded");
        let backends = Backends {
            log: backends::open_event_log(&config)?,
            stores: backends::open_store(&config)?,
            topics: Topics::default(),
        };
        let objects = backends::open_objects(&config)?;
        let secret = match &config.auth.jwt_secret {
            Some(secret) => secret.clone().into_bytes(),
            None => load_or_create_secret(&data_dir.join("jwt-secret"))?,
        };
        let admin_token = match &config.auth.admin_token {
            Some(token) => token.clone(),
            None => String::from_utf8(load_or_create_secret(&data_dir.join("admin-token"))?)?,
        };

        let mut channels: Vec<(Arc<dyn Channel>, Arc<FaultSwitch>, u32)> = Vec::new();
        for (name, channel) in &config.channels {
            let settings = channel
                .simulation()
                .map_err(|e| anyhow::anyhow!("channels.{name}: {e}"))?;
            let plugin = chat4all_connectors::channel(name, settings)
                .with_context(|| format!("no connector is called {name:?}"))?;
            let faults = plugin.faults();
            channels.push((Arc::new(plugin), faults, channel.rate_per_sec));
        }

        let tasks = Tasks::default();
        let channel_names = channels
            .iter()
            .map(|(c, _, _)| c.name().to_owned())
            .collect();
        let mut pulses = vec![roles::router::start(&tasks, &backends, channel_names).await?];
        for (channel, faults, rate_per_sec) in channels {
            let settings = config.delivery.settings(rate_per_sec);
            pulses
                .push(roles::connector::start(&tasks, &backends, channel, faults, settings).await?);
        }
        let lag = LagBoard::default();
        let api = roles::api::ApiParts {
            objects,
            secret,
            admin_token,
            lag: lag.clone(),
            metrics,
        };
        let (addr, pulse) = roles::api::start(&tasks, &backends, &config, api).await?;
        pulses.insert(0, pulse);
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

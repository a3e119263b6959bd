//! Configuration of `chat4all serve`, layered: built-in defaults, then a TOML file (`--config`), then
//! `CHAT4ALL_*` environment variables, then command-line flags (each layer overrides the one before).

use chat4all_connectors::simulated::{LatencyRange, SimulationSettings};
use chat4all_connectors::{instagram, whatsapp};
use chat4all_core::services::delivery::DeliverySettings;
use chat4all_core::services::files::FileLimits;
use chat4all_core::services::messaging::MAX_VALIDITY_SECS;
use serde::Deserialize;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The event log backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventLogBackend {
    /// A durable partitioned log in `<data-dir>/events.db`.
    #[default]
    Embedded,
}

/// The store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// SQLite in `<data-dir>/store.db`.
    #[default]
    Embedded,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (the default when stdout is not a terminal).
    Json,
    /// Human-readable lines (the default on a terminal).
    Pretty,
}

/// Every setting of `chat4all serve`, each optional so that layers can be merged. The same struct reads flags,
/// environment variables and the config file, so the three can never disagree on names.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Directory holding the event log, the store and generated secrets [default: ./data].
    #[arg(long, env = "CHAT4ALL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the HTTP api listens on [default: 127.0.0.1:8080].
    #[arg(long, env = "CHAT4ALL_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Partitions per topic of the embedded log; fixed when the data directory is created [default: 8].
    #[arg(long, env = "CHAT4ALL_PARTITIONS")]
    pub partitions: Option<u32>,
    /// Event log backend [default: embedded].
    #[arg(long, env = "CHAT4ALL_EVENT_LOG")]
    pub event_log: Option<EventLogBackend>,
    /// Store backend [default: embedded].
    #[arg(long, env = "CHAT4ALL_STORE")]
    pub store: Option<StoreBackend>,
    /// HS256 secret for access tokens, at least 32 bytes [default: generated once and kept in the data dir].
    #[arg(long, env = "CHAT4ALL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Largest file accepted, in bytes [default: 2147483648 (2 GiB)].
    #[arg(long, env = "CHAT4ALL_MAX_FILE_BYTES")]
    pub max_file_bytes: Option<u64>,
    /// How long a download link stays valid, in seconds [default: 3600].
    #[arg(long, env = "CHAT4ALL_DOWNLOAD_LINK_TTL_SECS")]
    pub download_link_ttl_secs: Option<u64>,
    /// Base of the links put in responses, such as https://chat.example.com [default: from the request's Host].
    #[arg(long, env = "CHAT4ALL_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Lifetime of access tokens in seconds [default: 3600].
    #[arg(long, env = "CHAT4ALL_TOKEN_TTL_SECS")]
    pub token_ttl_secs: Option<u64>,
    /// Log format [default: json when stdout is not a terminal, else pretty].
    #[arg(long, env = "CHAT4ALL_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Create the demo users user_a/pass_a, user_b/pass_b and user_c/pass_c (for the older system's k6 scripts;
    /// never in production) [default: false].
    #[arg(long, env = "CHAT4ALL_SEED_DEMO_USERS", num_args = 0..=1, default_missing_value = "true")]
    pub seed_demo_users: Option<bool>,
    /// Outbound pace of WhatsApp, messages per second; excess waits [default: 80].
    #[arg(long, env = "CHAT4ALL_WHATSAPP_RATE_PER_SEC")]
    pub whatsapp_rate_per_sec: Option<u32>,
    /// Outbound pace of Instagram, messages per second [default: 80].
    #[arg(long, env = "CHAT4ALL_INSTAGRAM_RATE_PER_SEC")]
    pub instagram_rate_per_sec: Option<u32>,
    /// How long a channel message may wait for delivery before it fails as expired, unless the message says
    /// otherwise (`validity_seconds`) [default: 36000].
    #[arg(long, env = "CHAT4ALL_DEFAULT_VALIDITY_SECS")]
    pub default_validity_secs: Option<u64>,
    /// How long a channel's circuit breaker stays open before a probe [default: 30].
    #[arg(long, env = "CHAT4ALL_BREAKER_COOL_DOWN_SECS")]
    pub breaker_cool_down_secs: Option<u64>,
    /// Requests per second each user may make (token bucket, bursts of twice that); 0 turns it off [default: 500].
    #[arg(long, env = "CHAT4ALL_RATE_LIMIT_PER_SEC")]
    pub rate_limit_per_sec: Option<u32>,
    /// Failed logins allowed per username per minute (bursts of twice that), then 429 [default: 5; 0 = off].
    #[arg(long, env = "CHAT4ALL_LOGIN_FAILURES_PER_USER_PER_MIN")]
    pub login_failures_per_user_per_min: Option<u32>,
    /// Failed logins allowed per client address per minute (bursts of twice that), then 429 [default: 30; 0 =
    /// off].
    #[arg(long, env = "CHAT4ALL_LOGIN_FAILURES_PER_ADDRESS_PER_MIN")]
    pub login_failures_per_address_per_min: Option<u32>,
    /// HTTP connections open at once; more are answered 503 and closed [default: the descriptor limit less
    /// 1024, at most 50000].
    #[arg(long, env = "CHAT4ALL_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds to receive a request's headers, and the longest pause inside a file upload's body [default: 30].
    #[arg(long, env = "CHAT4ALL_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a kept-alive connection may stay idle between requests [default: 15].
    #[arg(long, env = "CHAT4ALL_KEEP_ALIVE_TIMEOUT_SECS")]
    pub keep_alive_timeout_secs: Option<u64>,
    /// Seconds a request may take before it is answered 408; file uploads and downloads, which stream, are
    /// bounded by the header timeout's pause limit instead [default: 30].
    #[arg(long, env = "CHAT4ALL_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Seconds between heartbeat log lines of each role [default: 30].
    #[arg(long, env = "CHAT4ALL_HEARTBEAT_SECS")]
    pub heartbeat_secs: Option<u64>,
    /// Consumer lag (records) above which /health reports the consumers as lagging [default: 1000].
    #[arg(long, env = "CHAT4ALL_LAG_THRESHOLD")]
    pub lag_threshold: Option<u64>,
    /// Token for the /admin endpoints and `chat4all admin` [default: generated once into <data-dir>/admin-token].
    #[arg(long, env = "CHAT4ALL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Simulated WhatsApp answer time in ms, MIN-MAX [default: 200-500].
    #[arg(long, env = "CHAT4ALL_WHATSAPP_LATENCY_MS")]
    pub whatsapp_latency_ms: Option<LatencyRange>,
    /// Share of simulated WhatsApp calls that fail, 0-1 [default: 0].
    #[arg(long, env = "CHAT4ALL_WHATSAPP_FAILURE_RATE")]
    pub whatsapp_failure_rate: Option<f64>,
    /// Simulated Instagram answer time in ms, MIN-MAX [default: 300-700].
    #[arg(long, env = "CHAT4ALL_INSTAGRAM_LATENCY_MS")]
    pub instagram_latency_ms: Option<LatencyRange>,
    /// Share of simulated Instagram calls that fail, 0-1 [default: 0].
    #[arg(long, env = "CHAT4ALL_INSTAGRAM_FAILURE_RATE")]
    pub instagram_failure_rate: Option<f64>,
}

impl Settings {
    /// Reads a TOML config file whose keys are the flag names (`data-dir = "…"`).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }

    /// `self` where set, else `lower`.
    pub fn over(self, lower: Self) -> Self {
        Self {
            data_dir: self.data_dir.or(lower.data_dir),
            http_addr: self.http_addr.or(lower.http_addr),
            partitions: self.partitions.or(lower.partitions),
            event_log: self.event_log.or(lower.event_log),
            store: self.store.or(lower.store),
            jwt_secret: self.jwt_secret.or(lower.jwt_secret),
            token_ttl_secs: self.token_ttl_secs.or(lower.token_ttl_secs),
            max_file_bytes: self.max_file_bytes.or(lower.max_file_bytes),
            download_link_ttl_secs: self.download_link_ttl_secs.or(lower.download_link_ttl_secs),
            public_url: self.public_url.or(lower.public_url),
            log_format: self.log_format.or(lower.log_format),
            seed_demo_users: self.seed_demo_users.or(lower.seed_demo_users),
            whatsapp_rate_per_sec: self.whatsapp_rate_per_sec.or(lower.whatsapp_rate_per_sec),
            instagram_rate_per_sec: self.instagram_rate_per_sec.or(lower.instagram_rate_per_sec),
            default_validity_secs: self.default_validity_secs.or(lower.default_validity_secs),
            breaker_cool_down_secs: self.breaker_cool_down_secs.or(lower.breaker_cool_down_secs),
            rate_limit_per_sec: self.rate_limit_per_sec.or(lower.rate_limit_per_sec),
            admin_token: self.admin_token.or(lower.admin_token),
            login_failures_per_user_per_min: self
                .login_failures_per_user_per_min
                .or(lower.login_failures_per_user_per_min),
            login_failures_per_address_per_min: self
                .login_failures_per_address_per_min
                .or(lower.login_failures_per_address_per_min),
            max_connections: self.max_connections.or(lower.max_connections),
            header_read_timeout_secs: self
                .header_read_timeout_secs
                .or(lower.header_read_timeout_secs),
            keep_alive_timeout_secs: self
                .keep_alive_timeout_secs
                .or(lower.keep_alive_timeout_secs),
            request_timeout_secs: self.request_timeout_secs.or(lower.request_timeout_secs),
            heartbeat_secs: self.heartbeat_secs.or(lower.heartbeat_secs),
            lag_threshold: self.lag_threshold.or(lower.lag_threshold),
            whatsapp_latency_ms: self.whatsapp_latency_ms.or(lower.whatsapp_latency_ms),
            whatsapp_failure_rate: self.whatsapp_failure_rate.or(lower.whatsapp_failure_rate),
            instagram_latency_ms: self.instagram_latency_ms.or(lower.instagram_latency_ms),
            instagram_failure_rate: self.instagram_failure_rate.or(lower.instagram_failure_rate),
        }
    }
}

/// The resolved configuration the application is built from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP listen address (port 0 picks a free port).
    pub http_addr: SocketAddr,
    /// Partitions per topic.
    pub partitions: u32,
    /// Event log backend.
    pub event_log: EventLogBackend,
    /// Store backend.
    pub store: StoreBackend,
    /// Explicit JWT secret, if configured.
    pub jwt_secret: Option<String>,
    /// Access token lifetime.
    pub token_ttl: Duration,
    /// File size and link lifetime limits.
    pub file_limits: FileLimits,
    /// Base of links in responses.
    pub public_url: Option<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// Whether to create the demo users.
    pub seed_demo_users: bool,
    /// How connectors deliver (breaker, retries, parking); the pace is per channel below.
    pub delivery: DeliverySettings,
    /// WhatsApp's outbound pace (messages per second).
    pub whatsapp_rate_per_sec: u32,
    /// Instagram's outbound pace (messages per second).
    pub instagram_rate_per_sec: u32,
    /// Validity period of messages that do not set one.
    pub default_validity: Duration,
    /// Requests per second per user; 0 = unlimited.
    pub rate_limit_per_sec: u32,
    /// Explicit admin token, if configured.
    pub admin_token: Option<String>,
    /// Failed logins per username per minute; 0 = unlimited.
    pub login_failures_per_user_per_min: u32,
    /// Failed logins per client address per minute; 0 = unlimited.
    pub login_failures_per_address_per_min: u32,
    /// Open connections at once; `None` = from the descriptor limit at start.
    pub max_connections: Option<usize>,
    /// Time to receive request headers, and longest pause inside a file upload's body.
    pub header_read_timeout: Duration,
    /// Idle time after which a kept-alive connection is closed.
    pub keep_alive_timeout: Duration,
    /// Longest time to answer a request that does not stream.
    pub request_timeout: Duration,
    /// Interval of heartbeat log lines.
    pub heartbeat: Duration,
    /// Lag above which consumers are reported lagging.
    pub lag_threshold: u64,
    /// Simulated WhatsApp behaviour.
    pub whatsapp: SimulationSettings,
    /// Simulated Instagram behaviour.
    pub instagram: SimulationSettings,
}

impl Config {
    /// Applies defaults and checks every value.
    pub fn resolve(settings: Settings) -> anyhow::Result<Self> {
        let partitions = settings.partitions.unwrap_or(8);
        anyhow::ensure!(
            (1..=1024).contains(&partitions),
            "partitions must be between 1 and 1024, not {partitions}"
        );
        if let Some(secret) = &settings.jwt_secret {
            anyhow::ensure!(
                secret.len() >= 32,
                "the JWT secret must be at least 32 bytes (it has {})",
                secret.len()
            );
        }
        let ttl = settings.token_ttl_secs.unwrap_or(3600);
        anyhow::ensure!(
            (60..=30 * 24 * 3600).contains(&ttl),
            "token-ttl-secs must be between 60 and 2592000"
        );
        let simulation = |latency: Option<LatencyRange>, default, rate: Option<f64>, name: &str| {
            SimulationSettings::new(latency.unwrap_or(default), rate.unwrap_or(0.0))
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))
        };
        let file_limits = file_limits(&settings)?;
        let cool_down = settings.breaker_cool_down_secs.unwrap_or(30);
        anyhow::ensure!(
            (1..=3600).contains(&cool_down),
            "breaker-cool-down-secs must be between 1 and 3600"
        );
        let validity = settings.default_validity_secs.unwrap_or(36_000);
        anyhow::ensure!(
            (1..=MAX_VALIDITY_SECS).contains(&validity),
            "default-validity-secs must be between 1 and {MAX_VALIDITY_SECS}"
        );
        let rates = [
            settings.whatsapp_rate_per_sec.unwrap_or(80),
            settings.instagram_rate_per_sec.unwrap_or(80),
        ];
        anyhow::ensure!(
            rates.iter().all(|r| (1..=100_000).contains(r)),
            "channel rates must be between 1 and 100000 per second"
        );
        if let Some(token) = &settings.admin_token {
            anyhow::ensure!(
                token.len() >= 16,
                "the admin token must be at least 16 characters"
            );
        }
        let seconds = |value: Option<u64>, default: u64, name: &str| {
            let secs = value.unwrap_or(default);
            anyhow::ensure!(
                (1..=3600).contains(&secs),
                "{name} must be between 1 and 3600 seconds"
            );
            Ok(Duration::from_secs(secs))
        };
        if let Some(max) = settings.max_connections {
            anyhow::ensure!(max >= 1, "max-connections must be at least 1");
        }
        let mut delivery = DeliverySettings::default();
        delivery.breaker.cool_down = Duration::from_secs(cool_down);
        Ok(Self {
            file_limits,
            delivery,
            whatsapp_rate_per_sec: rates[0],
            instagram_rate_per_sec: rates[1],
            default_validity: Duration::from_secs(validity),
            rate_limit_per_sec: settings.rate_limit_per_sec.unwrap_or(500),
            admin_token: settings.admin_token.clone(),
            login_failures_per_user_per_min: settings.login_failures_per_user_per_min.unwrap_or(5),
            login_failures_per_address_per_min: settings
                .login_failures_per_address_per_min
                .unwrap_or(30),
            max_connections: settings.max_connections,
            header_read_timeout: seconds(
                settings.header_read_timeout_secs,
                30,
                "header-read-timeout-secs",
            )?,
            keep_alive_timeout: seconds(
                settings.keep_alive_timeout_secs,
                15,
                "keep-alive-timeout-secs",
            )?,
            request_timeout: seconds(settings.request_timeout_secs, 30, "request-timeout-secs")?,
            heartbeat: Duration::from_secs(settings.heartbeat_secs.unwrap_or(30).clamp(1, 3600)),
            lag_threshold: settings.lag_threshold.unwrap_or(1000),
            data_dir: settings.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            http_addr: settings
                .http_addr
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            partitions,
            event_log: settings.event_log.unwrap_or_default(),
            store: settings.store.unwrap_or_default(),
            jwt_secret: settings.jwt_secret,
            token_ttl: Duration::from_secs(ttl),
            public_url: settings
                .public_url
                .map(|url| {
                    let url = url.trim_end_matches('/').to_owned();
                    anyhow::ensure!(
                        url.starts_with("http://") || url.starts_with("https://"),
                        "public-url must start with http:// or https://"
                    );
                    Ok(url)
                })
                .transpose()?,
            log_format: settings
                .log_format
                .unwrap_or(if std::io::stdout().is_terminal() {
                    LogFormat::Pretty
                } else {
                    LogFormat::Json
                }),
            seed_demo_users: settings.seed_demo_users.unwrap_or(false),
            whatsapp: simulation(
                settings.whatsapp_latency_ms,
                whatsapp::DEFAULT_LATENCY,
                settings.whatsapp_failure_rate,
                "whatsapp",
            )?,
            instagram: simulation(
                settings.instagram_latency_ms,
                instagram::DEFAULT_LATENCY,
                settings.instagram_failure_rate,
                "instagram",
            )?,
        })
    }

    /// A configuration for tests and tools: everything default except the data dir, on a free loopback port.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        let mut config = Self::resolve(Settings::default()).expect("defaults are valid");
        config.data_dir = data_dir.to_owned();
        config.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }
}

fn file_limits(settings: &Settings) -> anyhow::Result<FileLimits> {
    let defaults = FileLimits::default();
    let limits = FileLimits {
        max_bytes: settings.max_file_bytes.unwrap_or(defaults.max_bytes),
        link_ttl_secs: settings
            .download_link_ttl_secs
            .unwrap_or(defaults.link_ttl_secs),
    };
    anyhow::ensure!(limits.max_bytes > 0, "max-file-bytes must be positive");
    anyhow::ensure!(
        (1..=7 * 24 * 3600).contains(&limits.link_ttl_secs),
        "download-link-ttl-secs must be between 1 and 604800"
    );
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let file: Settings = toml::from_str(
            "data-dir = \"/srv/chat\"\npartitions = 4\nwhatsapp-latency-ms = \"10-20\"",
        )
        .unwrap();
        let flags = Settings {
            partitions: Some(16),
            ..Settings::default()
        };
        let config = Config::resolve(flags.over(file)).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/chat"));
        assert_eq!(config.partitions, 16);
        assert_eq!(config.whatsapp.max_latency, Duration::from_millis(20));
        assert_eq!(config.instagram.min_latency, Duration::from_millis(300));
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn bad_values_are_explained() {
        assert!(toml::from_str::<Settings>("no-such-key = 1").is_err());
        let short = Settings {
            jwt_secret: Some("short".into()),
            ..Settings::default()
        };
        assert!(
            Config::resolve(short)
                .unwrap_err()
                .to_string()
                .contains("at least 32 bytes")
        );
        let zero = Settings {
            partitions: Some(0),
            ..Settings::default()
        };
        assert!(Config::resolve(zero).is_err());
        let rate = Settings {
            whatsapp_failure_rate: Some(2.0),
            ..Settings::default()
        };
        assert!(
            Config::resolve(rate)
                .unwrap_err()
                .to_string()
                .contains("whatsapp")
        );
    }
}

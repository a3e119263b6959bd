//! Configuration of `chat4all serve`, by section (`[http]`, `[storage]`, `[auth]`, `[files]`, `[groups]`,
//! `[delivery]`, `[telemetry]`, `[channels.<name>]`). The layers (built-in defaults, a TOML file, `CHAT4ALL_*` variables,
//! flags) are merged in [`layers`]; this module holds the one structure they produce and its checks.

mod channels;
mod check;
mod layers;
mod urls;

pub use channels::{ChannelConfig, default_channels};
pub use check::Invalid;
pub use layers::{Flags, load, load_over};
pub use urls::{EventLogBackend, ObjectsBackend, StoreBackend};

use chat4all_core::services::conversations::MAX_MEMBERS;
use chat4all_core::services::delivery::DeliverySettings;
use chat4all_core::services::files::FileLimits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (the default when stdout is not a terminal).
    Json,
    /// Human-readable lines (the default on a terminal).
    Pretty,
}

/// The configuration the application is built from, one field per section of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// `[http]`: the listener and its limits.
    pub http: HttpConfig,
    /// `[storage]`: where the event log, the store and the files live.
    pub storage: StorageConfig,
    /// `[auth]`: tokens, secrets, throttling.
    pub auth: AuthConfig,
    /// `[files]`: file size and link limits.
    pub files: FilesConfig,
    /// `[groups]`: group limits.
    pub groups: GroupsConfig,
    /// `[delivery]`: how connectors deliver (validity, breaker, retries).
    pub delivery: DeliveryConfig,
    /// `[telemetry]`: logs and health.
    pub telemetry: TelemetryConfig,
    /// `[channels.<name>]`: the connectors to start, by channel name.
    pub channels: BTreeMap<String, ChannelConfig>,
}

/// `[http]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpConfig {
    /// Listen address (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Base of the links in responses, such as `https://chat.example.com`; `None`: the listen address.
    pub public_url: Option<String>,
    /// Open connections at once; `None`: from the descriptor limit at start.
    pub max_connections: Option<usize>,
    /// Time to receive request headers, and longest pause inside a file upload's body.
    #[serde(rename = "header-read-timeout-secs", with = "secs")]
    pub header_read_timeout: Duration,
    /// Idle time after which a kept-alive connection is closed.
    #[serde(rename = "keep-alive-timeout-secs", with = "secs")]
    pub keep_alive_timeout: Duration,
    /// Longest time to answer a request that does not stream.
    #[serde(rename = "request-timeout-secs", with = "secs")]
    pub request_timeout: Duration,
    /// Serve `POST /bench/messages`, the send path without storing, as the reference of performance runs.
    pub bench_endpoints: bool,
}

/// `[storage]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StorageConfig {
    /// Data directory: relative backend paths, generated secrets, the lock.
    pub data_dir: PathBuf,
    /// Event log backend.
    pub event_log: EventLogBackend,
    /// Store backend.
    pub store: StoreBackend,
    /// Object storage backend (files).
    pub objects: ObjectsBackend,
    /// Partitions per topic, fixed when the event log is created; `None`: the embedded log's count (the one it
    /// was created with, 2 for a new one) or the Kafka adapter's default (8).
    pub partitions: Option<u32>,
    /// How long the embedded event log's writer, when several appends are arriving, waits for more before it
    /// commits, so that one fsync covers more of them: fewer disk writes a message for up to this much more
    /// latency. Zero: commit at once.
    #[serde(rename = "commit-delay-us", with = "micros")]
    pub commit_delay: Duration,
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthConfig {
    /// HS256 secret of access tokens; `None`: generated once into the data directory.
    pub jwt_secret: Option<String>,
    /// Access token lifetime.
    #[serde(rename = "token-ttl-secs", with = "secs")]
    pub token_ttl: Duration,
    /// Token of the /admin endpoints; `None`: generated once into the data directory.
    pub admin_token: Option<String>,
    /// Requests per second per user; 0 = unlimited.
    pub rate_limit_per_sec: u32,
    /// Failed logins per username per minute; 0 = unlimited.
    pub login_failures_per_user_per_min: u32,
    /// Failed logins per client address per minute; 0 = unlimited.
    pub login_failures_per_address_per_min: u32,
    /// Whether to create the demo users.
    pub seed_demo_users: bool,
}

/// `[files]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct FilesConfig {
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
    /// How long a download link stays valid, in seconds.
    pub download_link_ttl_secs: u64,
}

/// `[groups]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct GroupsConfig {
    /// Largest group, in members (the creator included); fixed in each group when it is created.
    pub max_members: u32,
}

/// `[delivery]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeliveryConfig {
    /// Validity period of messages that do not set one.
    #[serde(rename = "default-validity-secs", with = "secs")]
    pub default_validity: Duration,
    /// How long a channel's circuit breaker stays open before a probe.
    #[serde(rename = "breaker-cool-down-secs", with = "secs")]
    pub breaker_cool_down: Duration,
    /// Calls to the channel for one message before it fails as exhausted.
    pub max_attempts: u32,
    /// Delay scale of the first retry.
    #[serde(rename = "retry-base-ms", with = "millis")]
    pub retry_base: Duration,
    /// Longest delay between retries.
    #[serde(rename = "retry-max-ms", with = "millis")]
    pub retry_max: Duration,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TelemetryConfig {
    /// Log format; `None`: json when stdout is not a terminal, else pretty.
    pub log_format: Option<LogFormat>,
    /// Interval of heartbeat log lines.
    #[serde(rename = "heartbeat-secs", with = "secs")]
    pub heartbeat: Duration,
    /// Lag (records) above which consumers are reported lagging.
    pub lag_threshold: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            files: FilesConfig::default(),
            groups: GroupsConfig::default(),
            delivery: DeliveryConfig::default(),
            telemetry: TelemetryConfig::default(),
            channels: default_channels(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            max_connections: None,
            header_read_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            bench_endpoints: false,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            event_log: EventLogBackend::default(),
            store: StoreBackend::default(),
            objects: ObjectsBackend::default(),
            partitions: None,
            commit_delay: Duration::ZERO,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            token_ttl: Duration::from_secs(3600),
            admin_token: None,
            rate_limit_per_sec: 500,
            login_failures_per_user_per_min: 5,
            login_failures_per_address_per_min: 30,
            seed_demo_users: false,
        }
    }
}

impl Default for FilesConfig {
    fn default() -> Self {
        let limits = FileLimits::default();
        Self {
            max_bytes: limits.max_bytes,
            download_link_ttl_secs: limits.link_ttl_secs,
        }
    }
}

impl Default for GroupsConfig {
    fn default() -> Self {
        Self {
            max_members: MAX_MEMBERS as u32,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let settings = DeliverySettings::default();
        Self {
            default_validity: Duration::from_secs(36_000),
            breaker_cool_down: settings.breaker.cool_down,
            max_attempts: settings.max_attempts,
            retry_base: settings.backoff.base,
            retry_max: settings.backoff.max,
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: None,
            heartbeat: Duration::from_secs(30),
            lag_threshold: 1000,
        }
    }
}

impl StorageConfig {
    /// Where a backend path lies: under the data directory when relative.
    pub fn path(&self, path: &Path) -> PathBuf {
        self.data_dir.join(path)
    }
}

impl FilesConfig {
    /// The limits the files service applies.
    pub fn limits(&self) -> FileLimits {
        FileLimits {
            max_bytes: self.max_bytes,
            link_ttl_secs: self.download_link_ttl_secs,
        }
    }
}

impl DeliveryConfig {
    /// The delivery settings of a connector that paces at `rate_per_sec`.
    pub fn settings(&self, rate_per_sec: u32) -> DeliverySettings {
        let mut settings = DeliverySettings {
            rate_per_sec,
            max_attempts: self.max_attempts,
            ..DeliverySettings::default()
        };
        settings.breaker.cool_down = self.breaker_cool_down;
        settings.backoff.base = self.retry_base;
        settings.backoff.max = self.retry_max;
        settings
    }
}

impl TelemetryConfig {
    /// The log format, json unless configured or on a terminal.
    pub fn log_format(&self) -> LogFormat {
        self.log_format
            .unwrap_or(if std::io::stdout().is_terminal() {
                LogFormat::Pretty
            } else {
                LogFormat::Json
            })
    }
}

impl Config {
    /// A configuration for tests and tools: everything default except the data dir, on a free loopback port.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        let mut config = Self::default();
        config.storage.data_dir = data_dir.to_owned();
        config.http.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }
}

/// Serde of a duration written as a whole number of one unit: `duration_in!(module, as_unit, from_unit)`.
macro_rules! duration_in {
    ($(#[$doc:meta])* $module:ident, $as_unit:ident, $from_unit:ident) => {
        $(#[$doc])*
        mod $module {
            use serde::{Deserialize, Deserializer, Serializer};
            use std::time::Duration;

            pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(value.$as_unit().try_into().unwrap_or(u64::MAX))
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
                u64::deserialize(d).map(Duration::$from_unit)
            }
        }
    };
}

duration_in!(
    /// A duration written as whole seconds.
    secs, as_secs, from_secs
);
duration_in!(
    /// A duration written as whole milliseconds.
    millis, as_millis, from_millis
);
duration_in!(
    /// A duration written as whole microseconds.
    micros, as_micros, from_micros
);

#[cfg(test)]
mod tests;

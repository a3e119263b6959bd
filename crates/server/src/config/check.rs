//! The checks of values that their types alone do not bound, each failure naming its key.

use super::Config;
use chat4all_core::services::messaging::MAX_VALIDITY_SECS;
use std::time::Duration;

/// Longest commit delay: past it, the wait costs more latency than a disk's flush takes.
const MAX_COMMIT_DELAY: Duration = Duration::from_millis(10);

/// A value out of range: its key (`storage.partitions`) and what is wrong.
#[derive(Debug)]
pub struct Invalid {
    /// Dotted key of the setting.
    pub key: String,
    /// What the value must be.
    pub problem: String,
}

impl Config {
    /// Checks every value the types alone do not, and normalises the public URL (no trailing `/`).
    pub fn check(&mut self) -> Result<(), Invalid> {
        fn ensure(ok: bool, key: &str, problem: impl Into<String>) -> Result<(), Invalid> {
            match ok {
                true => Ok(()),
                false => Err(Invalid {
                    key: key.to_owned(),
                    problem: problem.into(),
                }),
            }
        }
        let secs = |d: Duration, range: std::ops::RangeInclusive<u64>, key: &str| {
            let (low, high) = (*range.start(), *range.end());
            let problem = format!("must be between {low} and {high} seconds");
            ensure(range.contains(&d.as_secs()), key, problem)
        };
        let http = &mut self.http;
        if let Some(url) = &mut http.public_url {
            *url = url.trim_end_matches('/').to_owned();
            let web = url.starts_with("http://") || url.starts_with("https://");
            ensure(
                web,
                "http.public-url",
                "must start with http:// or https://",
            )?;
        }
        let some_connections = http.max_connections.is_none_or(|max| max >= 1);
        ensure(
            some_connections,
            "http.max-connections",
            "must be at least 1",
        )?;
        secs(
            http.header_read_timeout,
            1..=3600,
            "http.header-read-timeout-secs",
        )?;
        secs(
            http.keep_alive_timeout,
            1..=3600,
            "http.keep-alive-timeout-secs",
        )?;
        secs(http.request_timeout, 1..=3600, "http.request-timeout-secs")?;
        let partitions = self
            .storage
            .partitions
            .is_none_or(|n| (1..=1024).contains(&n));
        ensure(
            partitions,
            "storage.partitions",
            "must be between 1 and 1024",
        )?;
        ensure(
            self.storage.commit_delay <= MAX_COMMIT_DELAY,
            "storage.commit-delay-us",
            format!(
                "must be between 0 and {} microseconds",
                MAX_COMMIT_DELAY.as_micros()
            ),
        )?;
        let auth = &self.auth;
        if let Some(secret) = &auth.jwt_secret {
            ensure(
                secret.len() >= 32,
                "auth.jwt-secret",
                "must be at least 32 bytes",
            )?;
        }
        if let Some(token) = &auth.admin_token {
            ensure(
                token.len() >= 16,
                "auth.admin-token",
                "must be at least 16 characters",
            )?;
        }
        secs(auth.token_ttl, 60..=30 * 24 * 3600, "auth.token-ttl-secs")?;
        ensure(
            self.files.max_bytes > 0,
            "files.max-bytes",
            "must be positive",
        )?;
        let link_ttl = (1..=7 * 24 * 3600).contains(&self.files.download_link_ttl_secs);
        let problem = "must be between 1 and 604800 seconds";
        ensure(link_ttl, "files.download-link-ttl-secs", problem)?;
        let group_size = (2..=10_000).contains(&self.groups.max_members);
        let problem = "must be between 2 and 10000";
        ensure(group_size, "groups.max-members", problem)?;
        let delivery = &self.delivery;
        let validity = 1..=MAX_VALIDITY_SECS;
        secs(
            delivery.default_validity,
            validity,
            "delivery.default-validity-secs",
        )?;
        secs(
            delivery.breaker_cool_down,
            1..=3600,
            "delivery.breaker-cool-down-secs",
        )?;
        let attempts = delivery.max_attempts >= 1;
        ensure(attempts, "delivery.max-attempts", "must be at least 1")?;
        let retry = !delivery.retry_base.is_zero() && delivery.retry_base <= delivery.retry_max;
        ensure(
            retry,
            "delivery.retry-base-ms",
            "must be positive and at most retry-max-ms",
        )?;
        secs(
            self.telemetry.heartbeat,
            1..=3600,
            "telemetry.heartbeat-secs",
        )?;
        for (name, channel) in &self.channels {
            let known = chat4all_connectors::NAMES.contains(&name.as_str());
            let problem = format!(
                "no connector is called {name:?}; built in: {}",
                chat4all_connectors::NAMES.join(", ")
            );
            ensure(known, &format!("channels.{name}"), problem)?;
            channel.check().map_err(|(key, problem)| Invalid {
                key: format!("channels.{name}.{key}"),
                problem,
            })?;
        }
        Ok(())
    }
}

//! The `kafka://` URL and the settings it carries.

use chat4all_core::ports::LogError;
use std::time::Duration;

/// How records are spread over partitions by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioner {
    /// The port's own hash ([`chat4all_core::ports::partition_for`], FNV-1a): a key lands in the same partition
    /// as on the embedded log, which the contract suite and any code that predicts partitions rely on.
    Fnv1a,
    /// librdkafka's `murmur2_random`: the Java client's key hashing, for topics shared with JVM producers.
    Murmur2Random,
}

/// Settings of a [`crate::KafkaLog`]; every field can be set from the URL's query (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// Partitions of every topic the log creates (and expects of topics that exist already).
    pub partitions: u32,
    /// Replication factor of created topics.
    pub replication: i32,
    /// Consumer group session timeout: how long a silent member keeps its partitions (crash failover time).
    pub session_timeout: Duration,
    /// Group heartbeat interval; `None` means a third of the session timeout.
    pub heartbeat: Option<Duration>,
    /// `fetch.wait.max.ms`: how long the broker may hold a fetch that has no data (end-to-end latency floor).
    pub fetch_wait: Duration,
    /// `linger.ms`: how long the producer waits to fill a batch.
    pub linger: Duration,
    /// `message.timeout.ms`: how long an append may take before it fails.
    pub delivery_timeout: Duration,
    /// How keys map to partitions.
    pub partitioner: Partitioner,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        Self {
            partitions: 8,
            replication: 1,
            session_timeout: Duration::from_millis(6000),
            heartbeat: None,
            fetch_wait: Duration::from_millis(100),
            linger: Duration::from_millis(1),
            delivery_timeout: Duration::from_millis(30_000),
            partitioner: Partitioner::Fnv1a,
        }
    }
}

impl KafkaOptions {
    /// The heartbeat interval in effect.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat.unwrap_or(self.session_timeout / 3)
    }
}

/// Splits `kafka://host:port[,host:port][?key=value&…]` into the bootstrap servers and `base` updated with the
/// query's keys.
pub fn parse_url(url: &str, base: KafkaOptions) -> Result<(String, KafkaOptions), LogError> {
    let invalid = |why: String| LogError::Invalid(format!("kafka URL {url:?}: {why}"));
    let rest = url
        .strip_prefix("kafka://")
        .ok_or_else(|| invalid("expected kafka://host:port".into()))?;
    let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
    let hosts = hosts.trim_end_matches('/');
    if hosts.is_empty() || hosts.split(',').any(|h| h.trim().is_empty()) {
        return Err(invalid("no broker address".into()));
    }
    let mut options = base;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| invalid(format!("{key} must be a whole number, got {value:?}")))
        };
        let millis = || number().map(Duration::from_millis);
        match key {
            "partitions" => {
                options.partitions = u32::try_from(number()?)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| invalid("partitions must be 1 or more".into()))?;
            }
            "replication" => {
                options.replication = i32::try_from(number()?)
                    .ok()
                    .filter(|r| *r > 0)
                    .ok_or_else(|| invalid("replication must be 1 or more".into()))?;
            }
            "session_timeout_ms" => options.session_timeout = millis()?,
            "heartbeat_ms" => options.heartbeat = Some(millis()?),
            "fetch_wait_ms" => options.fetch_wait = millis()?,
            "linger_ms" => options.linger = millis()?,
            "delivery_timeout_ms" => options.delivery_timeout = millis()?,
            "partitioner" => {
                options.partitioner = match value {
                    "fnv1a" => Partitioner::Fnv1a,
                    "murmur2_random" => Partitioner::Murmur2Random,
                    other => {
                        return Err(invalid(format!(
                            "partitioner is fnv1a or murmur2_random, got {other:?}"
                        )));
                    }
                }
            }
            other => return Err(invalid(format!("unknown key {other:?}"))),
        }
    }
    Ok((hosts.to_owned(), options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let (hosts, o) = parse_url("kafka://127.0.0.1:9092", KafkaOptions::default()).unwrap();
        assert_eq!(hosts, "127.0.0.1:9092");
        assert_eq!(o, KafkaOptions::default());
        assert_eq!(o.heartbeat_interval(), Duration::from_millis(2000));

        let (hosts, o) = parse_url(
            "kafka://a:1,b:2/?partitions=4&replication=3&session_timeout_ms=4500&fetch_wait_ms=50&partitioner=murmur2_random",
            KafkaOptions::default(),
        )
        .unwrap();
        assert_eq!(hosts, "a:1,b:2");
        assert_eq!(o.partitions, 4);
        assert_eq!(o.replication, 3);
        assert_eq!(o.heartbeat_interval(), Duration::from_millis(1500));
        assert_eq!(o.fetch_wait, Duration::from_millis(50));
        assert_eq!(o.partitioner, Partitioner::Murmur2Random);
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "http://a:1",
            "kafka://",
            "kafka://a:1?partitions=0",
            "kafka://a:1?nope=1",
            "kafka://a:1?heartbeat_ms=x",
            "kafka://a:1?partitioner=crc32",
        ] {
            assert!(
                parse_url(url, KafkaOptions::default()).is_err(),
                "{url} is refused"
            );
        }
    }
}

//! A simulated messaging provider: answers after a random latency in a configured range, fails a configured
//! share of calls, and rejects addresses the channel could not reach (the recipient rules of
//! [`chat4all_core::recipient`]), without ever blocking a thread.

use async_trait::async_trait;
use chat4all_core::events::OutboundMessage;
use chat4all_core::ports::{Channel, ChannelError, ChannelReceipt};
use chat4all_core::recipient::Recipient;
use rand::Rng;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a simulated channel behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulationSettings {
    /// Shortest answer time.
    pub min_latency: Duration,
    /// Longest answer time.
    pub max_latency: Duration,
    /// Share of calls that fail as unavailable, 0.0–1.0.
    pub failure_rate: f64,
}

/// A latency range written `MIN-MAX` in milliseconds (`200-500`), or one number for a fixed latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct LatencyRange {
    /// Lower bound (ms).
    pub min_ms: u64,
    /// Upper bound (ms).
    pub max_ms: u64,
}

impl FromStr for LatencyRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("latency {s:?} must be milliseconds as MIN-MAX (such as 200-500) or one number")
        };
        let (min, max) = s.split_once('-').unwrap_or((s, s));
        let (min_ms, max_ms) = (
            min.trim().parse().map_err(|_| bad())?,
            max.trim().parse().map_err(|_| bad())?,
        );
        if min_ms > max_ms || max_ms > 600_000 {
            return Err(bad());
        }
        Ok(Self { min_ms, max_ms })
    }
}

impl TryFrom<String> for LatencyRange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<LatencyRange> for String {
    fn from(range: LatencyRange) -> Self {
        range.to_string()
    }
}

impl fmt::Display for LatencyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min_ms, self.max_ms)
    }
}

impl SimulationSettings {
    /// Settings from a latency range and a failure rate; the rate must lie in 0.0–1.0.
    pub fn new(latency: LatencyRange, failure_rate: f64) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&failure_rate) {
            return Err(format!(
                "failure rate {failure_rate} must be between 0 and 1"
            ));
        }
        Ok(Self {
            min_latency: Duration::from_millis(latency.min_ms),
            max_latency: Duration::from_millis(latency.max_ms),
            failure_rate,
        })
    }
}

/// A fault injected into a simulated channel, for demonstrations and tests.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Fault {
    /// Every call fails as unavailable.
    Down,
    /// This share of calls fails.
    Flaky {
        /// 0.0–1.0.
        failure_rate: f64,
    },
    /// Every call takes this much longer.
    Slow {
        /// Added latency.
        extra: Duration,
    },
}

/// The fault currently injected into a channel, with its end.
#[derive(Default)]
pub struct FaultSwitch {
    active: Mutex<Option<(Fault, Instant)>>,
}

impl Fault {
    /// `down`, `flaky` or `slow`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Down => "down",
            Self::Flaky { .. } => "flaky",
            Self::Slow { .. } => "slow",
        }
    }
}

impl FaultSwitch {
    /// Injects `fault` for `duration`; `None` restores normal behaviour at once.
    pub fn set(&self, fault: Option<Fault>, duration: Duration) {
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) =
            fault.map(|f| (f, Instant::now() + duration));
    }

    /// The fault in force now, if any.
    pub fn current(&self) -> Option<Fault> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        match *active {
            Some((fault, until)) if Instant::now() < until => Some(fault),
            Some(_) => {
                *active = None;
                None
            }
            None => None,
        }
    }
}

/// A channel that simulates a remote provider.
pub struct SimulatedChannel {
    name: &'static str,
    id_prefix: &'static str,
    settings: SimulationSettings,
    faults: Arc<FaultSwitch>,
}

impl SimulatedChannel {
    /// A simulated channel called `name` whose receipts start with `id_prefix`.
    pub fn new(name: &'static str, id_prefix: &'static str, settings: SimulationSettings) -> Self {
        Self {
            name,
            id_prefix,
            settings,
            faults: Arc::default(),
        }
    }

    /// The switch that injects faults into this channel.
    pub fn faults(&self) -> Arc<FaultSwitch> {
        self.faults.clone()
    }

    fn latency(&self) -> Duration {
        let (min, max) = (self.settings.min_latency, self.settings.max_latency);
        if max <= min {
            min
        } else {
            rand::rng().random_range(min..=max)
        }
    }
}

#[async_trait]
impl Channel for SimulatedChannel {
    fn name(&self) -> &str {
        self.name
    }

    async fn send(&self, message: &OutboundMessage) -> Result<ChannelReceipt, ChannelError> {
        let fault = self.faults.current();
        let extra = match fault {
            Some(Fault::Slow { extra }) => extra,
            _ => Duration::ZERO,
        };
        tokio::time::sleep(self.latency() + extra).await;
        let failure_rate = match fault {
            Some(Fault::Down) => 1.0,
            Some(Fault::Flaky { failure_rate }) => failure_rate,
            _ => self.settings.failure_rate,
        };
        if failure_rate > 0.0 && rand::rng().random_bool(failure_rate.min(1.0)) {
            return Err(ChannelError::Unavailable(format!(
                "{} answered 503 (simulated failure)",
                self.name
            )));
        }
        // A provider refuses what the api would not have accepted: a message replayed from an older version,
        // or built by hand, fails for good instead of being retried.
        let recipient_id = format!("{}:{}", self.name, message.address);
        if !matches!(
            Recipient::parse(Some(&recipient_id)),
            Ok(Recipient::Channel { .. })
        ) {
            return Err(ChannelError::Rejected(format!(
                "{} answered 400: {:?} is not a valid address",
                self.name, message.address
            )));
        }
        Ok(ChannelReceipt {
            channel_message_id: format!("{}{}", self.id_prefix, uuid::Uuid::now_v7().simple()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_ranges_parse() {
        assert_eq!(
            "200-500".parse::<LatencyRange>().unwrap(),
            LatencyRange {
                min_ms: 200,
                max_ms: 500
            }
        );
        assert_eq!(
            "0".parse::<LatencyRange>().unwrap(),
            LatencyRange {
                min_ms: 0,
                max_ms: 0
            }
        );
        for bad in ["500-200", "x", "1-2-3", "-5", "1-999999999"] {
            assert!(bad.parse::<LatencyRange>().is_err(), "{bad:?} accepted");
        }
        assert!(
            SimulationSettings::new(
                LatencyRange {
                    min_ms: 0,
                    max_ms: 0
                },
                1.5
            )
            .is_err()
        );
    }
}

//! The channel map, `[channels.<name>]`: one entry per connector to start, each with its pace and its simulated
//! behaviour. A new channel is an entry here (or in the file) and a plugin in `chat4all-connectors`.

use chat4all_connectors::simulated::{LatencyRange, SimulationSettings};
use chat4all_connectors::{instagram, whatsapp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One channel's connector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChannelConfig {
    /// Outbound pace, messages per second; excess waits.
    pub rate_per_sec: u32,
    /// Simulated answer time in milliseconds, `MIN-MAX`.
    pub latency_ms: LatencyRange,
    /// Share of simulated calls that fail, 0-1.
    pub failure_rate: f64,
}

impl Default for ChannelConfig {
    /// What a channel added in the file gets for the keys it leaves out.
    fn default() -> Self {
        Self {
            rate_per_sec: 80,
            latency_ms: whatsapp::DEFAULT_LATENCY,
            failure_rate: 0.0,
        }
    }
}

impl ChannelConfig {
    /// The simulated provider's behaviour; fails when the failure rate lies outside 0-1.
    pub fn simulation(&self) -> Result<SimulationSettings, String> {
        SimulationSettings::new(self.latency_ms, self.failure_rate)
    }

    /// Checks the values, naming the key at fault.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=100_000).contains(&self.rate_per_sec) {
            return Err((
                "rate-per-sec",
                "must be between 1 and 100000 per second".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(("failure-rate", "must be between 0 and 1".into()));
        }
        Ok(())
    }
}

/// The channels started by default: WhatsApp (200-500 ms) and Instagram (300-700 ms), 80 messages per second each.
pub fn default_channels() -> BTreeMap<String, ChannelConfig> {
    [
        (whatsapp::NAME, whatsapp::DEFAULT_LATENCY),
        (instagram::NAME, instagram::DEFAULT_LATENCY),
    ]
    .into_iter()
    .map(|(name, latency_ms)| {
        let channel = ChannelConfig {
            latency_ms,
            ..ChannelConfig::default()
        };
        (name.to_owned(), channel)
    })
    .collect()
}

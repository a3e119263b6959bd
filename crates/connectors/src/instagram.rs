//! Instagram (simulated Messaging API): answers in 300–700 ms by default, as the older system's simulator did.

use crate::simulated::{LatencyRange, SimulatedChannel, SimulationSettings};

/// Channel name, the `recipient_id` prefix.
pub const NAME: &str = "instagram";
/// Default answer time.
pub const DEFAULT_LATENCY: LatencyRange = LatencyRange {
    min_ms: 300,
    max_ms: 700,
};

/// The Instagram channel with `settings`.
pub fn channel(settings: SimulationSettings) -> SimulatedChannel {
    SimulatedChannel::new(NAME, "igmid.", settings)
}

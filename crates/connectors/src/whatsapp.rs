//! WhatsApp (simulated Cloud API): answers in 200–500 ms by default, as the older system's simulator did.

use crate::simulated::{LatencyRange, SimulatedChannel, SimulationSettings};

/// Channel name, the `recipient_id` prefix.
pub const NAME: &str = "whatsapp";
/// Default answer time.
pub const DEFAULT_LATENCY: LatencyRange = LatencyRange {
    min_ms: 200,
    max_ms: 500,
};

/// The WhatsApp channel with `settings`.
pub fn channel(settings: SimulationSettings) -> SimulatedChannel {
    SimulatedChannel::new(NAME, "wamid.", settings)
}

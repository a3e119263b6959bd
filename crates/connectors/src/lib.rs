//! Channel plugins. Each channel is a module exposing its defaults and a constructor; all share the simulated
//! provider in [`simulated`], which behaves like a remote API (latency, failures) without leaving the machine.

pub mod instagram;
pub mod simulated;
pub mod whatsapp;

pub use simulated::{Fault, FaultSwitch, SimulatedChannel, SimulationSettings};

/// The names of the channel plugins built in.
pub const NAMES: [&str; 2] = [whatsapp::NAME, instagram::NAME];

/// The channel plugin called `name`, behaving as `settings`; `None` when no plugin has that name. A new channel is
/// a module here, an arm below, and an entry in the server's channel map.
pub fn channel(name: &str, settings: SimulationSettings) -> Option<SimulatedChannel> {
    match name {
        whatsapp::NAME => Some(whatsapp::channel(settings)),
        instagram::NAME => Some(instagram::channel(settings)),
        _ => None,
    }
}

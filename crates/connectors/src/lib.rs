//! Channel plugins. Each channel is a module exposing its defaults and a constructor; all share the simulated
//! provider in [`simulated`], which behaves like a remote API (latency, failures) without leaving the machine.

pub mod instagram;
pub mod simulated;
pub mod whatsapp;

pub use simulated::{Fault, FaultSwitch, SimulatedChannel, SimulationSettings};

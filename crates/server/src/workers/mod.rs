//! Background workers: the router and the channel connectors, each a set of partition consumers.

pub mod connector;
mod consume;
pub mod router;

pub use consume::Workers;

//! Background workers: the router and the channel connectors, each a set of partition consumers.

mod consume;
pub mod connector;
pub mod router;

pub use consume::Workers;

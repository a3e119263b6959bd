//! Use cases: what the api, the router and the connectors do, written against the ports only.

pub mod accounts;
pub mod changes;
pub mod control;
pub mod conversations;
pub mod dead_letters;
pub mod delivery;
pub mod files;
pub mod groups;
pub mod identities;
pub mod messaging;
pub mod receipts;
pub mod routing;

//! One contract test suite per port, run by every adapter's tests (embedded always; distributed adapters when a
//! test server is reachable). Each check panics with a message naming the broken rule.

pub mod channel;
pub mod log;
pub mod objects;
pub mod servers;
pub mod store;

//! Chat4All core: the domain model, the events that flow between roles, the ports (traits) that adapters
//! implement, and the use cases built on them. Nothing here touches a socket, a file or a database driver.

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod envelope;
pub mod error;
pub mod events;
pub mod ids;
pub mod model;
pub mod ports;
pub mod recipient;
pub mod resilience;
pub mod services;
pub mod status;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;

pub use error::ServiceError;

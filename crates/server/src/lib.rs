//! The `chat4all` server: HTTP api, router and connector workers, telemetry, configuration, and the wiring that
//! chooses adapters. `Application` is the one composition root, used by the binary and by the tests.

pub mod api;
pub mod app;
pub mod backends;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod http_server;
pub mod roles;
pub mod telemetry;

pub use app::{Application, Role};
pub use config::{Config, Flags};

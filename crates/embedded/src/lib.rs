//! Embedded adapters for `chat4all serve`: everything in one data directory, no external server.
//!
//! - [`SqliteLog`]: the event log, a partitioned append-only table in its own SQLite file with group commit.
//! - [`SqliteStore`]: users, conversations, messages, status history and idempotency keys.

mod log;
mod sqlite;
mod store;

pub use log::{LogOptions, SqliteLog};
pub use store::SqliteStore;

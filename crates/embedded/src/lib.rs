//! Embedded adapters for `chat4all serve`: everything in one data directory, no external server.
//!
//! - [`SegmentLog`]: the event log, partitioned and append-only in a directory of segment files, with group commit.
//! - [`SqliteStore`]: users, conversations, messages, status history, files and idempotency keys.
//! - [`LocalObjects`]: file bytes in a directory, published atomically.

mod log;
mod objects;
mod sqlite;
mod store;

pub use log::{DEFAULT_PARTITIONS, LogOptions, SegmentLog};
pub use objects::LocalObjects;
pub use store::SqliteStore;

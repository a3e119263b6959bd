//! Command-line tools beside `serve`.

pub mod admin;
pub mod heartbeats;

//! Command-line tools beside `serve`.

pub mod admin;

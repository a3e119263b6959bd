//! Chat4All load testing: reads k6 results (NDJSON points and the summary export) and turns each run into a
//! Markdown report with SVG charts, and many runs into one comparison table.

pub mod capacity;
pub mod cli;
pub mod k6;
pub mod report;
pub mod stats;
pub mod svg;

//! In-memory adapters of the ports, for tests that need a working backend without a directory or a database.
//! Behind the `testing` feature for other crates' tests; each passes its port's contract suite.

mod objects;

pub use objects::MemoryObjects;

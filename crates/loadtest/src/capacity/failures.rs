//! Why requests failed, counted by kind: a step that lost requests says whether the server refused them, a
//! connection broke, or the generator itself gave up, instead of a bare count.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// What went wrong with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not sent: the generator already had its most requests in flight (the server is hopelessly behind).
    Overflow,
    /// No connection could be opened.
    Connect,
    /// The connection closed or broke before the whole answer came.
    Broken,
    /// No answer within the generator's timeout.
    Timeout,
    /// The server answered with a 4xx status.
    ClientStatus,
    /// The server answered with a status that is neither a success nor a 4xx.
    ServerStatus,
}

impl Failure {
    const ALL: [Failure; 6] = [
        Failure::Overflow,
        Failure::Connect,
        Failure::Broken,
        Failure::Timeout,
        Failure::ClientStatus,
        Failure::ServerStatus,
    ];

    fn label(self) -> &'static str {
        match self {
            Failure::Overflow => "not sent (too many in flight)",
            Failure::Connect => "no connection",
            Failure::Broken => "connection broken",
            Failure::Timeout => "timed out",
            Failure::ClientStatus => "answered 4xx",
            Failure::ServerStatus => "answered 5xx",
        }
    }
}

/// A step's failures as they happen, shared by its requests.
#[derive(Debug, Default)]
pub struct FailureCounter([AtomicU64; Failure::ALL.len()]);

impl FailureCounter {
    /// Counts one failure of `kind`.
    pub fn count(&self, kind: Failure) {
        self.0[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The failures so far.
    pub fn counts(&self) -> Failures {
        Failures(self.0.each_ref().map(|n| n.load(Ordering::Relaxed)))
    }
}

/// How many requests failed, by kind. Displays as `2 timed out, 1 connection broken` (empty when none failed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures([u64; Failure::ALL.len()]);

impl Failures {
    /// All failures, whatever their kind.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Failures of `kind`.
    pub fn of(&self, kind: Failure) -> u64 {
        self.0[kind as usize]
    }
}

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for kind in Failure::ALL {
            let n = self.of(kind);
            if n > 0 {
                write!(f, "{}{n} {}", if first { "" } else { ", " }, kind.label())?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_and_named_by_kind() {
        let counter = FailureCounter::default();
        assert_eq!(counter.counts().to_string(), "");
        counter.count(Failure::Timeout);
        counter.count(Failure::Broken);
        counter.count(Failure::Timeout);
        let counts = counter.counts();
        assert_eq!((counts.total(), counts.of(Failure::Timeout)), (3, 2));
        assert_eq!(counts.to_string(), "1 connection broken, 2 timed out");
    }
}

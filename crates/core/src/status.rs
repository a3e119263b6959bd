//! The message status state machine: statuses only ever move forward.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Delivery status of a message, as clients see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageStatus {
    /// Persisted and being routed: where every message starts.
    #[default]
    Sent,
    /// Its channel is unavailable; it will be retried.
    Pending,
    /// Reached the recipient (or nobody else had to be reached).
    Delivered,
    /// The recipient read it.
    Read,
    /// Will never be delivered; `failure_reason` says why.
    Failed,
}

impl MessageStatus {
    /// Position on the forward path SENT → PENDING → DELIVERED → READ (FAILED is terminal beside it).
    fn rank(self) -> u8 {
        match self {
            Self::Sent => 0,
            Self::Pending => 1,
            Self::Delivered => 2,
            Self::Read => 3,
            Self::Failed => 4,
        }
    }

    /// Whether a message in `self` may move to `next`. Late or repeated updates are refused, so a message never
    /// moves backwards: SENT→PENDING→DELIVERED→READ and SENT|PENDING→FAILED.
    pub fn can_advance_to(self, next: Self) -> bool {
        match (self, next) {
            (Self::Failed, _) | (_, Self::Sent) => false,
            (Self::Sent | Self::Pending, Self::Failed) => true,
            (_, Self::Failed) => false,
            (from, to) => to.rank() > from.rank(),
        }
    }

    /// The wire name (`"DELIVERED"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "SENT",
            Self::Pending => "PENDING",
            Self::Delivered => "DELIVERED",
            Self::Read => "READ",
            Self::Failed => "FAILED",
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "SENT" => Self::Sent,
            "PENDING" => Self::Pending,
            "DELIVERED" => Self::Delivered,
            "READ" => Self::Read,
            "FAILED" => Self::Failed,
            other => return Err(format!("unknown message status {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::MessageStatus::{self, *};

    const ALL: [MessageStatus; 5] = [Sent, Pending, Delivered, Read, Failed];

    #[test]
    fn forward_path_is_allowed() {
        assert!(Sent.can_advance_to(Pending));
        assert!(Sent.can_advance_to(Delivered));
        assert!(Pending.can_advance_to(Delivered));
        assert!(Delivered.can_advance_to(Read));
        assert!(Sent.can_advance_to(Read));
    }

    #[test]
    fn never_moves_backwards_or_repeats() {
        for s in ALL {
            assert!(!s.can_advance_to(s), "{s} -> {s}");
            assert!(!s.can_advance_to(Sent), "{s} -> SENT");
        }
        assert!(!Delivered.can_advance_to(Pending));
        assert!(!Read.can_advance_to(Delivered));
    }

    #[test]
    fn failed_only_from_sent_or_pending_and_is_terminal() {
        assert!(Sent.can_advance_to(Failed));
        assert!(Pending.can_advance_to(Failed));
        assert!(!Delivered.can_advance_to(Failed));
        assert!(!Read.can_advance_to(Failed));
        for s in ALL {
            assert!(!Failed.can_advance_to(s));
        }
    }

    #[test]
    fn wire_names_round_trip() {
        for s in ALL {
            assert_eq!(s.as_str().parse::<MessageStatus>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("sent".parse::<MessageStatus>().is_err());
    }
}

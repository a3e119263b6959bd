//! Where a message goes, decided from its `recipient_id`.

use crate::ids::{InvalidValue, UserId};

/// Channels that ship with Chat4All; any other `prefix:` names a channel no connector serves.
pub const KNOWN_CHANNELS: [&str; 2] = ["whatsapp", "instagram"];

/// The destination named by a message's `recipient_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// No recipient: the other members of the conversation.
    Members,
    /// A user of this system.
    User(UserId),
    /// An external channel (`whatsapp:+5511…`, `instagram:@handle`, or another `prefix:address`).
    Channel {
        /// Lower-case channel name, the `prefix` before `:`.
        channel: String,
        /// The address on that channel.
        address: String,
    },
}

impl Recipient {
    /// Parses a `recipient_id`. Addresses of the known channels are checked (E.164 for WhatsApp, `@handle` for
    /// Instagram); an unknown prefix is accepted here and fails later in routing, as the contract says.
    pub fn parse(recipient_id: Option<&str>) -> Result<Self, InvalidValue> {
        let Some(raw) = recipient_id else {
            return Ok(Self::Members);
        };
        if raw.is_empty() || raw.len() > 256 || raw.chars().any(char::is_control) {
            return Err(InvalidValue(
                "recipient_id must be 1-256 printable characters".into(),
            ));
        }
        let Some((prefix, address)) = raw.split_once(':') else {
            return UserId::parse(raw).map(Self::User);
        };
        let channel_name = !prefix.is_empty()
            && prefix.len() <= 32
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !channel_name {
            return UserId::parse(raw).map(Self::User);
        }
        match prefix {
            "whatsapp" if !is_e164(address) => Err(InvalidValue(
                "a whatsapp recipient must be an E.164 number such as whatsapp:+5511999990000"
                    .into(),
            )),
            "instagram" if !is_instagram_handle(address) => Err(InvalidValue(
                "an instagram recipient must be a handle such as instagram:@someone".into(),
            )),
            _ if address.is_empty() => Err(InvalidValue(format!(
                "recipient_id has no address after {prefix:?}"
            ))),
            // Instagram handles are case-insensitive: one spelling, so that `@Maria` and `@maria` are one person.
            "instagram" => Ok(Self::Channel {
                channel: prefix.to_owned(),
                address: address.to_ascii_lowercase(),
            }),
            _ => Ok(Self::Channel {
                channel: prefix.to_owned(),
                address: address.to_owned(),
            }),
        }
    }
}

/// `+` then 8–15 digits, the first not zero.
fn is_e164(address: &str) -> bool {
    address.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// `@` then 1–30 of letters, digits, `.` and `_`.
fn is_instagram_handle(address: &str) -> bool {
    address.strip_prefix('@').is_some_and(|handle| {
        (1..=30).contains(&handle.len())
            && handle
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(c: &str, a: &str) -> Recipient {
        Recipient::Channel {
            channel: c.into(),
            address: a.into(),
        }
    }

    #[test]
    fn parses_each_kind() {
        assert_eq!(Recipient::parse(None).unwrap(), Recipient::Members);
        assert_eq!(
            Recipient::parse(Some("whatsapp:+5511999990000")).unwrap(),
            channel("whatsapp", "+5511999990000")
        );
        assert_eq!(
            Recipient::parse(Some("instagram:@maria.s")).unwrap(),
            channel("instagram", "@maria.s")
        );
        assert_eq!(
            Recipient::parse(Some("instagram:@Maria.S")).unwrap(),
            channel("instagram", "@maria.s"),
            "handles are case-insensitive"
        );
        assert_eq!(
            Recipient::parse(Some("telegram:12345")).unwrap(),
            channel("telegram", "12345")
        );
        let user = "0190f3a0-0000-7000-8000-000000000000";
        assert_eq!(
            Recipient::parse(Some(user)).unwrap(),
            Recipient::User(UserId::parse(user).unwrap())
        );
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "whatsapp:5511999",
            "whatsapp:+12",
            "whatsapp:+0123456789",
            "instagram:maria",
            "instagram:@",
            "sms:",
            "",
            "a\nb",
        ] {
            assert!(Recipient::parse(Some(bad)).is_err(), "{bad:?} accepted");
        }
    }
}

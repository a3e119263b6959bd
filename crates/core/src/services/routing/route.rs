//! The routing decision for one message, apart from the batch work around it so that it can be tested alone.

use crate::events::{ChannelAddress, OutboundFile, OutboundMessage};
use crate::ids::UserId;
use crate::model::Message;
use crate::recipient::Recipient;
use std::collections::{HashMap, HashSet};

/// The user recipients of a batch that exist, and the preferred identity of those that have one.
#[derive(Default)]
pub(super) struct Users {
    pub(super) known: HashSet<UserId>,
    pub(super) preferred: HashMap<UserId, ChannelAddress>,
}

/// Where one message goes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// DELIVERED by the router (in-app), with the detail of the step.
    Deliver(String),
    /// FAILED by the router, with the reason (a metric label) and the detail of the step.
    Fail(&'static str, String),
    /// Handed to a channel, whose connector settles it.
    Channel(ChannelAddress),
    /// DELIVERED in-app (with this detail) and also handed to the user's preferred channel, whose later answer
    /// the forward-only rule ignores.
    AppAndChannel(String, ChannelAddress),
}

/// The route of a message to `recipient_id`; `via` is the identity its sender named a channel for.
pub(super) fn decide(
    recipient_id: Option<&str>,
    via: Option<&ChannelAddress>,
    users: &Users,
    served: &HashSet<String>,
) -> Route {
    let unserved = |channel: &str| {
        Route::Fail(
            "unknown_channel",
            format!("no connector serves channel {channel:?}"),
        )
    };
    if let Some(via) = via {
        return if served.contains(&via.channel) {
            Route::Channel(via.clone())
        } else {
            unserved(&via.channel)
        };
    }
    match Recipient::parse(recipient_id) {
        Ok(Recipient::Members) => Route::Deliver("delivered to the conversation".into()),
        Ok(Recipient::User(user)) if users.known.contains(&user) => {
            let in_app = format!("delivered to user {user}");
            match users.preferred.get(&user) {
                Some(to) if served.contains(&to.channel) => Route::AppAndChannel(
                    format!("{in_app}; also sent via {}", to.channel),
                    to.clone(),
                ),
                _ => Route::Deliver(in_app),
            }
        }
        Ok(Recipient::User(user)) => {
            Route::Fail("unknown_recipient", format!("unknown recipient {user}"))
        }
        Ok(Recipient::Channel { channel, address }) if served.contains(&channel) => {
            Route::Channel(ChannelAddress { channel, address })
        }
        Ok(Recipient::Channel { channel, .. }) => unserved(&channel),
        Err(e) => Route::Fail("invalid_recipient", format!("invalid recipient: {e}")),
    }
}

/// What the connector of `to.channel` receives for `message`.
pub(super) fn outbound_event(
    message: &Message,
    to: ChannelAddress,
    expires_at: Option<i64>,
) -> OutboundMessage {
    OutboundMessage {
        message_id: message.message_id.clone(),
        conversation_id: message.conversation_id.clone(),
        seq: message.seq,
        sender_id: message.sender_id.clone(),
        channel: to.channel,
        address: to.address,
        content: message.content.clone(),
        file: message.attachment.as_ref().map(|f| OutboundFile {
            file_id: f.file_id.clone(),
            filename: f.filename.clone(),
            mimetype: f.mimetype.clone(),
            size_bytes: f.size_bytes,
            checksum: f.checksum.clone(),
        }),
        timestamp: message.timestamp,
        expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(channel: &str, address: &str) -> ChannelAddress {
        ChannelAddress {
            channel: channel.into(),
            address: address.into(),
        }
    }

    fn served() -> HashSet<String> {
        ["whatsapp".to_owned()].into()
    }

    #[test]
    fn a_user_with_a_preferred_identity_is_reached_in_app_and_on_its_channel() {
        let (alice, bob) = (UserId::generate(), UserId::generate());
        let users = Users {
            known: [alice.clone(), bob.clone()].into(),
            preferred: [(alice.clone(), to("whatsapp", "+5511999990000"))].into(),
        };
        assert_eq!(
            decide(Some(alice.as_str()), None, &users, &served()),
            Route::AppAndChannel(
                format!("delivered to user {alice}; also sent via whatsapp"),
                to("whatsapp", "+5511999990000")
            )
        );
        assert_eq!(
            decide(Some(bob.as_str()), None, &users, &served()),
            Route::Deliver(format!("delivered to user {bob}"))
        );
        let unserved = Users {
            preferred: [(bob.clone(), to("instagram", "@bob"))].into(),
            ..users
        };
        assert_eq!(
            decide(Some(bob.as_str()), None, &unserved, &served()),
            Route::Deliver(format!("delivered to user {bob}")),
            "a preferred channel without a connector leaves the message in-app only"
        );
    }

    #[test]
    fn a_named_channel_routes_there_only_while_a_connector_serves_it() {
        let user = UserId::generate();
        let users = Users::default();
        let whatsapp = to("whatsapp", "+5511999990000");
        assert_eq!(
            decide(Some(user.as_str()), Some(&whatsapp), &users, &served()),
            Route::Channel(whatsapp)
        );
        assert!(matches!(
            decide(
                Some(user.as_str()),
                Some(&to("instagram", "@x")),
                &users,
                &served()
            ),
            Route::Fail("unknown_channel", _)
        ));
    }
}

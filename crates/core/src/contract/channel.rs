//! The channel contract: a channel names the recipient prefix it serves, accepts messages with a receipt of its
//! own, rejects bad addresses for good, and serves concurrent sends.

use crate::events::OutboundMessage;
use crate::ids::{ConversationId, MessageId, UserId};
use crate::ports::{Channel, ChannelError};
use crate::recipient::Recipient;
use crate::time::now_millis;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Addresses on the channel under test: one it accepts, one it must refuse.
#[derive(Debug, Clone, Copy)]
pub struct Addresses<'a> {
    /// An address the channel delivers to (`+5511999990000` for WhatsApp).
    pub valid: &'a str,
    /// An address the channel refuses as invalid.
    pub invalid: &'a str,
}

/// Runs every check against a channel set up to answer within milliseconds and never fail at random (a
/// simulation with a failure rate of 0), so that every outcome is the channel's rule and not chance.
pub async fn run_all(channel: Arc<dyn Channel>, addresses: Addresses<'_>) {
    let channel = channel.as_ref();
    name_is_a_recipient_prefix(channel, addresses.valid);
    accepts_messages_with_unique_receipts(channel, addresses.valid).await;
    rejects_invalid_addresses_for_good(channel, addresses.invalid).await;
    concurrent_sends_all_complete(channel, addresses.valid).await;
}

fn message(channel: &dyn Channel, address: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: MessageId::generate(),
        conversation_id: ConversationId::generate(),
        seq: 1,
        sender_id: UserId::generate(),
        channel: channel.name().to_owned(),
        address: address.to_owned(),
        content: "contract check".into(),
        file: None,
        timestamp: now_millis(),
        expires_at: None,
    }
}

/// Sends `messages` (in turn or all at once) and returns their receipts' ids, checking each is non-empty and
/// all differ.
async fn send_all_accepted(
    channel: &dyn Channel,
    messages: Vec<OutboundMessage>,
    concurrently: bool,
) -> HashSet<String> {
    let outcomes = if concurrently {
        futures::future::join_all(messages.iter().map(|m| channel.send(m))).await
    } else {
        let mut outcomes = Vec::new();
        for m in &messages {
            outcomes.push(channel.send(m).await);
        }
        outcomes
    };
    let mut ids = HashSet::new();
    for outcome in outcomes {
        let receipt = outcome.unwrap_or_else(|e| panic!("a valid message is accepted, got {e}"));
        assert!(
            !receipt.channel_message_id.is_empty(),
            "a receipt carries the channel's message id"
        );
        assert!(
            ids.insert(receipt.channel_message_id.clone()),
            "each message gets its own channel message id, {} came twice",
            receipt.channel_message_id
        );
    }
    ids
}

/// `name()` is the lower-case prefix of the `recipient_id`s the channel serves (`whatsapp:+55…`).
pub fn name_is_a_recipient_prefix(channel: &dyn Channel, valid_address: &str) {
    let name = channel.name();
    assert!(!name.is_empty(), "a channel has a name");
    assert_eq!(
        name,
        name.to_ascii_lowercase(),
        "a channel name is lower-case"
    );
    assert_eq!(
        Recipient::parse(Some(&format!("{name}:{valid_address}"))),
        Ok(Recipient::Channel {
            channel: name.to_owned(),
            address: valid_address.to_owned(),
        }),
        "`{name}:{valid_address}` is a recipient_id routed to this channel"
    );
}

/// Messages to a valid address are accepted, each with its own non-empty channel message id.
pub async fn accepts_messages_with_unique_receipts(channel: &dyn Channel, valid_address: &str) {
    let messages = (0..5).map(|_| message(channel, valid_address)).collect();
    send_all_accepted(channel, messages, false).await;
}

/// A message to an invalid address is [`ChannelError::Rejected`], which no retry can fix.
pub async fn rejects_invalid_addresses_for_good(channel: &dyn Channel, invalid_address: &str) {
    let outcome = channel.send(&message(channel, invalid_address)).await;
    assert!(
        matches!(&outcome, Err(e @ ChannelError::Rejected(_)) if !e.is_retryable()),
        "a message to {invalid_address:?} is rejected as non-retryable, got {outcome:?}"
    );
}

/// Many sends in flight at once all complete, each with its own receipt.
pub async fn concurrent_sends_all_complete(channel: &dyn Channel, valid_address: &str) {
    let messages = (0..64).map(|_| message(channel, valid_address)).collect();
    let ids = tokio::time::timeout(
        Duration::from_secs(30),
        send_all_accepted(channel, messages, true),
    )
    .await
    .expect("64 concurrent sends complete within 30 s");
    assert_eq!(ids.len(), 64, "every concurrent send has a receipt");
}

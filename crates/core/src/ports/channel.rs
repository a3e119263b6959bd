//! The channel connector port: one implementation per external channel (WhatsApp, Instagram, …).

use crate::events::OutboundMessage;
use async_trait::async_trait;

/// What a channel answers when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelReceipt {
    /// The channel's own reference for the message, never empty.
    pub channel_message_id: String,
}

/// Why a channel did not take a message. The class decides what happens next: retryable errors may succeed
/// later (retry, park); permanent ones fail the message at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Timeout, 5xx-like error or outage: worth retrying.
    #[error("channel unavailable: {0}")]
    Unavailable(String),
    /// The channel asks us to slow down.
    #[error("rate limited by the channel")]
    RateLimited,
    /// Invalid recipient or rejected content: retrying cannot help.
    #[error("rejected by the channel: {0}")]
    Rejected(String),
}

impl ChannelError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Rejected(_))
    }
}

/// An external messaging channel. What every adapter promises is checked by `contract::channel`.
#[async_trait]
pub trait Channel: Send + Sync {
    /// Channel name, the `recipient_id` prefix it serves (`whatsapp`).
    fn name(&self) -> &str;

    /// Hands one message to the channel: a receipt with the channel's own id, different for every message, or
    /// [`ChannelError::Rejected`] for an address the channel cannot reach. Safe to call concurrently.
    async fn send(&self, message: &OutboundMessage) -> Result<ChannelReceipt, ChannelError>;
}

//! The statuses already delivered, so that each change reaches the caller once.

use crate::types::{Message, MessageStatus};
use std::collections::{HashMap, VecDeque};

/// The last status delivered of the latest messages, so that a status change missed while disconnected is
/// caught up from history, and one seen twice is delivered once.
#[derive(Default)]
pub(super) struct Statuses {
    by_id: HashMap<String, (String, u64, MessageStatus)>,
    order: VecDeque<String>,
}

/// How many messages [`Statuses`] remembers.
const TRACKED_MESSAGES: usize = 10_000;

/// A status's place in the forward-only order (READ and FAILED are final).
fn rank(status: MessageStatus) -> u8 {
    match status {
        MessageStatus::Accepted | MessageStatus::Unknown => 0,
        MessageStatus::Sent => 1,
        MessageStatus::Pending => 2,
        MessageStatus::Delivered => 3,
        MessageStatus::Read | MessageStatus::Failed => 4,
    }
}

impl Statuses {
    pub(super) fn remember(&mut self, message: &Message) {
        let entry = (message.conversation_id.clone(), message.seq, message.status);
        if self
            .by_id
            .insert(message.message_id.clone(), entry)
            .is_none()
        {
            self.order.push_back(message.message_id.clone());
            while self.order.len() > TRACKED_MESSAGES {
                if let Some(old) = self.order.pop_front() {
                    self.by_id.remove(&old);
                }
            }
        }
    }

    /// True when `status` moves the message forward (or the message is not remembered); remembers it.
    fn advance(&mut self, message_id: &str, status: MessageStatus) -> bool {
        match self.by_id.get_mut(message_id) {
            Some(entry) if rank(status) <= rank(entry.2) => false,
            Some(entry) => {
                entry.2 = status;
                true
            }
            None => true,
        }
    }

    /// Like [`Statuses::advance`], but false for a message not remembered.
    pub(super) fn advance_known(&mut self, message_id: &str, status: MessageStatus) -> bool {
        self.by_id.contains_key(message_id) && self.advance(message_id, status)
    }

    /// The lowest `seq` of a remembered message of `conversation` whose status may still change.
    pub(super) fn lowest_open(&self, conversation: &str) -> Option<u64> {
        self.by_id
            .values()
            .filter(|(c, _, status)| c == conversation && rank(*status) < 4)
            .map(|(_, seq, _)| *seq)
            .min()
    }
}

//! Per-participant read receipts: each member has one receipt per conversation, the `seq` up to which they have
//! read it, and it only moves forward. A message becomes READ for its sender once every other member's receipt
//! reaches it; that change goes through [`Changes`] like every status change, so it is published once.

use super::changes::{Changes, read_by_all};
use super::conversations::Conversations;
use crate::error::ServiceError;
use crate::events::StatusUpdate;
use crate::ids::{ConversationId, CorrelationId, UserId};
use crate::model::{Conversation, HistoryQuery, Message, ReadReceipt};
use crate::ports::Stores;
use crate::status::MessageStatus;
use crate::time::now_millis;
use std::collections::HashMap;

/// Messages examined per store read while a receipt moves.
const PAGE: u32 = 100;

/// The read receipt use cases.
#[derive(Clone)]
pub struct Receipts {
    stores: Stores,
    conversations: Conversations,
    changes: Changes,
}

impl Receipts {
    /// Receipts over `stores`, applying READ through `changes`.
    pub fn new(stores: &Stores, changes: Changes) -> Self {
        Self {
            stores: stores.clone(),
            conversations: Conversations::new(stores),
            changes,
        }
    }

    /// Records that `caller` has read `conversation` up to `up_to_seq` (1..=its last `seq`, else 400; 403/404 as
    /// history). Returns the caller's receipt in force: a lower value than before leaves it where it was.
    pub async fn read_up_to(
        &self,
        caller: &UserId,
        conversation: &str,
        up_to_seq: u64,
        correlation_id: &CorrelationId,
    ) -> Result<ReadReceipt, ServiceError> {
        let id = ConversationId::parse(conversation)?;
        let conversation = self.conversations.for_member(&id, caller).await?;
        let last = self.last_seq(&id).await?;
        if last == 0 {
            return Err(ServiceError::Invalid(format!(
                "conversation {id} has no message to read yet"
            )));
        }
        if !(1..=last).contains(&up_to_seq) {
            return Err(ServiceError::Invalid(format!(
                "up_to_seq must be between 1 and {last}, the conversation's last seq"
            )));
        }
        self.advance(
            &conversation,
            caller,
            up_to_seq,
            now_millis(),
            correlation_id,
        )
        .await
    }

    /// Moves `reader`'s receipt up to `up_to_seq` (never back), then makes READ every DELIVERED message up to it
    /// that all members but its sender have now read (the message at `up_to_seq` is always looked at again, so
    /// that re-reading it settles it). Returns the receipt in force.
    pub async fn advance(
        &self,
        conversation: &Conversation,
        reader: &UserId,
        up_to_seq: u64,
        at: i64,
        correlation_id: &CorrelationId,
    ) -> Result<ReadReceipt, ServiceError> {
        let id = &conversation.conversation_id;
        let receipt = ReadReceipt {
            conversation_id: id.clone(),
            user_id: reader.clone(),
            up_to_seq,
            read_at: at,
        };
        let before = self.stores.receipts.advance_receipt(&receipt).await?;
        let from = before.as_ref().map_or(0, |b| b.up_to_seq);
        let in_force = match before {
            Some(b) if b.up_to_seq >= up_to_seq => b,
            _ => receipt,
        };
        let reached: HashMap<UserId, u64> = self
            .stores
            .receipts
            .receipts(std::slice::from_ref(id))
            .await?
            .into_iter()
            .map(|r| (r.user_id, r.up_to_seq))
            .collect();
        let ceiling = ceiling(&conversation.members, reader, &reached).min(up_to_seq);
        let mut after = from.min(up_to_seq - 1);
        while after < ceiling {
            let query = HistoryQuery {
                limit: PAGE,
                offset: 0,
                after: Some(after),
                before: Some(ceiling.saturating_add(1)),
                ascending: true,
            };
            let page = self.stores.messages.history(id, &query).await?;
            let Some(last) = page.messages.last() else {
                break;
            };
            after = last.seq;
            let updates: Vec<StatusUpdate> = page
                .messages
                .iter()
                .filter(|m| {
                    m.status == MessageStatus::Delivered
                        && read_by_all(m, &conversation.members, &reached)
                })
                .map(|m| StatusUpdate {
                    at,
                    correlation_id: Some(correlation_id.clone()),
                    ..StatusUpdate::now(m.message_id.clone(), MessageStatus::Read, None)
                })
                .collect();
            if !updates.is_empty() {
                self.changes.apply_now(&updates).await?;
            }
            if !page.has_more {
                break;
            }
        }
        Ok(in_force)
    }

    /// Who has read `message`: every reader whose receipt reaches it, its sender aside, by id.
    pub async fn read_by(&self, message: &Message) -> Result<Vec<UserId>, ServiceError> {
        let mut readers: Vec<UserId> = self
            .stores
            .receipts
            .receipts(std::slice::from_ref(&message.conversation_id))
            .await?
            .into_iter()
            .filter(|r| r.up_to_seq >= message.seq && r.user_id != message.sender_id)
            .map(|r| r.user_id)
            .collect();
        readers.sort_unstable();
        Ok(readers)
    }

    async fn last_seq(&self, id: &ConversationId) -> Result<u64, ServiceError> {
        let newest = HistoryQuery {
            limit: 1,
            offset: 0,
            after: None,
            before: None,
            ascending: false,
        };
        let page = self.stores.messages.history(id, &newest).await?;
        Ok(page.messages.first().map_or(0, |m| m.seq))
    }
}

/// The highest `seq` that `reader`'s move can complete: a message is read by all once every member but its
/// sender reached it, so at most one of the other members (the sender) may lag behind it — the second-lowest
/// receipt of the others bounds the work, however far the reader jumps.
fn ceiling(members: &[UserId], reader: &UserId, reached: &HashMap<UserId, u64>) -> u64 {
    let mut others: Vec<u64> = members
        .iter()
        .filter(|m| *m != reader)
        .map(|m| reached.get(m).copied().unwrap_or(0))
        .collect();
    others.sort_unstable();
    others.get(1).copied().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::ceiling;
    use crate::ids::{ConversationId, MessageId, UserId};
    use crate::model::Message;
    use crate::services::changes::read_by_all;
    use crate::status::MessageStatus;
    use std::collections::HashMap;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn message(seq: u64, sender: &str) -> Message {
        Message {
            message_id: MessageId::generate(),
            conversation_id: ConversationId::parse("g").unwrap(),
            seq,
            sender_id: user(sender),
            recipient_id: None,
            content: "hi".into(),
            status: MessageStatus::Delivered,
            timestamp: 1,
            delivered_at: Some(1),
            read_at: None,
            failure_reason: None,
            attachment: None,
        }
    }

    fn reached(pairs: &[(&str, u64)]) -> HashMap<UserId, u64> {
        pairs.iter().map(|(u, s)| (user(u), *s)).collect()
    }

    #[test]
    fn a_message_is_read_by_all_when_every_member_but_its_sender_reached_it() {
        let members = [user("ann"), user("bob"), user("cy")];
        let m = message(5, "ann");
        assert!(!read_by_all(&m, &members, &reached(&[("bob", 5)])));
        assert!(!read_by_all(
            &m,
            &members,
            &reached(&[("bob", 9), ("cy", 4)])
        ));
        assert!(read_by_all(
            &m,
            &members,
            &reached(&[("bob", 5), ("cy", 6)])
        ));
        let direct = [user("ann"), user("bob")];
        assert!(
            read_by_all(&m, &direct, &reached(&[("bob", 5)])),
            "in a direct conversation one reader is all"
        );
        assert!(
            !read_by_all(&m, &[user("ann")], &reached(&[("ann", 9)])),
            "the sender alone never makes their message READ"
        );
    }

    #[test]
    fn the_work_of_a_move_is_bounded_by_the_second_lowest_other_receipt() {
        let members = [user("ann"), user("bob"), user("cy"), user("dee")];
        let r = reached(&[("bob", 3), ("cy", 8), ("dee", 20)]);
        assert_eq!(
            ceiling(&members, &user("ann"), &r),
            8,
            "only bob's messages past 3 can complete"
        );
        let direct = [user("ann"), user("bob")];
        assert_eq!(ceiling(&direct, &user("ann"), &r), u64::MAX);
    }
}

//! One partition's waiting messages (a lane): each conversation's messages queue in offset order, and the heads
//! that are due are taken out to be tried and put back when they have to wait. The lane also keeps which offsets
//! are not settled yet, so that the consumer commits only up to the oldest of them (its commit point): whatever
//! still waits is read again after a restart.

use crate::events::OutboundMessage;
use crate::ids::{ConversationId, CorrelationId};
use crate::ports::Record;
use std::collections::{BTreeSet, HashMap, VecDeque};
use tokio::time::Instant;

/// A message waiting in a lane.
pub(super) struct Parked {
    pub(super) record: Record,
    pub(super) message: OutboundMessage,
    pub(super) correlation_id: CorrelationId,
    pub(super) attempts: u32,
    pub(super) due: Instant,
    pub(super) announced_pending: bool,
}

/// One partition's waiting messages: per conversation, in offset order.
#[derive(Default)]
pub(super) struct Lane {
    conversations: HashMap<ConversationId, VecDeque<Parked>>,
    unsettled: BTreeSet<u64>,
    pub(super) read_up_to: Option<u64>,
    pub(super) committed: Option<u64>,
}

impl Lane {
    pub(super) fn len(&self) -> usize {
        self.unsettled.len()
    }

    pub(super) fn push(&mut self, parked: Parked) {
        self.unsettled.insert(parked.record.offset);
        self.conversations
            .entry(parked.message.conversation_id.clone())
            .or_default()
            .push_back(parked);
    }

    /// Removes and returns the heads that are due.
    /// For each conversation whose head is due: the head and up to `run - 1` messages behind it, in order.
    pub(super) fn take_due(&mut self, now: Instant, run: usize) -> Vec<VecDeque<Parked>> {
        let mut due = Vec::new();
        for queue in self.conversations.values_mut() {
            if queue.front().is_some_and(|head| head.due <= now) {
                due.push(queue.drain(..run.min(queue.len())).collect());
            }
        }
        self.conversations.retain(|_, queue| !queue.is_empty());
        due
    }

    /// Puts a head back in front of its conversation.
    pub(super) fn put_back(&mut self, parked: Parked) {
        self.conversations
            .entry(parked.message.conversation_id.clone())
            .or_default()
            .push_front(parked);
    }

    /// Messages queued behind a PENDING head wait too: marks them and returns them, to be reported PENDING.
    pub(super) fn waiting_behind_pending(&mut self) -> Vec<(&OutboundMessage, &CorrelationId)> {
        let mut waiting = Vec::new();
        for queue in self.conversations.values_mut() {
            if queue.front().is_some_and(|head| head.announced_pending) {
                for parked in queue.iter_mut().skip(1).filter(|p| !p.announced_pending) {
                    parked.announced_pending = true;
                    waiting.push((&parked.message, &parked.correlation_id));
                }
            }
        }
        waiting
    }

    /// Messages reported PENDING and still waiting here.
    pub(super) fn announced_pending(&self) -> usize {
        self.conversations
            .values()
            .flatten()
            .filter(|p| p.announced_pending)
            .count()
    }

    pub(super) fn settle(&mut self, offset: u64) {
        self.unsettled.remove(&offset);
    }

    pub(super) fn next_due(&self) -> Option<Instant> {
        self.conversations
            .values()
            .filter_map(|q| q.front().map(|h| h.due))
            .min()
    }

    /// The offset every record before which is settled, if it moved since the last commit.
    pub(super) fn commit_point(&self) -> Option<u64> {
        let point = self
            .unsettled
            .first()
            .copied()
            .or(self.read_up_to.map(|o| o + 1))?;
        (Some(point) > self.committed).then_some(point)
    }
}

#[cfg(test)]
mod tests {
    use super::{Lane, Parked};
    use crate::events::OutboundMessage;
    use crate::ids::{ConversationId, CorrelationId, MessageId, UserId};
    use crate::ports::Record;
    use std::time::Duration;
    use tokio::time::Instant;

    /// A message of `conversation` read at `offset` (also its `seq`, to recognise it), due at `due`.
    fn parked(conversation: &ConversationId, offset: u64, due: Instant) -> Parked {
        Parked {
            record: Record {
                partition: 0,
                offset,
                key: conversation.to_string(),
                headers: Vec::new(),
                payload: Vec::new(),
                timestamp: 0,
            },
            message: OutboundMessage {
                message_id: MessageId::generate(),
                conversation_id: conversation.clone(),
                seq: offset,
                sender_id: UserId::generate(),
                channel: "whatsapp".into(),
                address: "+5511999990000".into(),
                content: format!("message {offset}"),
                file: None,
                timestamp: 0,
                expires_at: None,
            },
            correlation_id: CorrelationId::from_header_or_new(None),
            attempts: 0,
            due,
            announced_pending: false,
        }
    }

    fn offsets(queue: &std::collections::VecDeque<Parked>) -> Vec<u64> {
        queue.iter().map(|p| p.record.offset).collect()
    }

    /// Reads `offsets` of `conversation` into the lane, all due at `due`.
    fn read(lane: &mut Lane, conversation: &ConversationId, offsets: &[u64], due: Instant) {
        for &offset in offsets {
            lane.read_up_to = Some(offset);
            lane.push(parked(conversation, offset, due));
        }
    }

    #[test]
    fn take_due_gives_each_due_head_with_up_to_run_messages_behind_it_in_order() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let (a, b) = (ConversationId::generate(), ConversationId::generate());
        let mut lane = Lane::default();
        read(&mut lane, &a, &[0, 1, 2, 3, 4], now);
        read(&mut lane, &b, &[5, 6], later);

        let due = lane.take_due(now, 3);
        assert_eq!(due.len(), 1, "only the conversation whose head is due");
        assert_eq!(offsets(&due[0]), [0, 1, 2]);
        assert_eq!(lane.len(), 7, "taken is not settled");
        let due = lane.take_due(now, 3);
        assert_eq!(due.iter().map(offsets).collect::<Vec<_>>(), [vec![3, 4]]);
        assert!(lane.take_due(now, 3).is_empty(), "a is drained, b not due");
        assert_eq!(lane.next_due(), Some(later));

        let due = lane.take_due(later, 64);
        assert_eq!(due.iter().map(offsets).collect::<Vec<_>>(), [vec![5, 6]]);
        assert_eq!(lane.next_due(), None);
    }

    #[test]
    fn a_head_that_is_not_due_holds_back_the_due_messages_behind_it() {
        let now = Instant::now();
        let a = ConversationId::generate();
        let mut lane = Lane::default();
        lane.push(parked(&a, 0, now + Duration::from_secs(60)));
        lane.push(parked(&a, 1, now));
        assert!(lane.take_due(now, 64).is_empty());
    }

    #[test]
    fn putting_back_in_reverse_restores_the_order() {
        let now = Instant::now();
        let a = ConversationId::generate();
        let mut lane = Lane::default();
        read(&mut lane, &a, &[0, 1, 2, 3, 4], now);
        let mut taken = lane.take_due(now, 3).pop().unwrap();
        let head = taken.pop_front().unwrap();
        // As a round does: the messages not reached first, last to first, then the head that has to wait.
        for parked in taken.into_iter().rev() {
            lane.put_back(parked);
        }
        lane.put_back(head);
        let again = lane.take_due(now, 64);
        assert_eq!(
            again.iter().map(offsets).collect::<Vec<_>>(),
            [vec![0, 1, 2, 3, 4]]
        );
    }

    #[test]
    fn the_commit_point_stops_at_the_oldest_unsettled_offset_and_moves_as_offsets_settle() {
        let now = Instant::now();
        let (a, b) = (ConversationId::generate(), ConversationId::generate());
        let mut lane = Lane::default();
        assert_eq!(lane.commit_point(), None, "nothing read");
        read(&mut lane, &a, &[10], now);
        read(&mut lane, &b, &[11], now);
        read(&mut lane, &a, &[12], now);
        assert_eq!(lane.commit_point(), Some(10));
        lane.committed = Some(10);
        assert_eq!(lane.commit_point(), None, "not moved since the last commit");

        lane.settle(11);
        lane.settle(12);
        assert_eq!(
            lane.commit_point(),
            None,
            "10 still waits: nothing after it"
        );
        lane.settle(10);
        assert_eq!(lane.commit_point(), Some(13), "all read is settled");
        lane.committed = Some(13);

        // A record that could not be parked (sent to dead letters) still moves the point once read.
        lane.read_up_to = Some(13);
        assert_eq!(lane.commit_point(), Some(14));
        lane.committed = Some(14);
        read(&mut lane, &a, &[14, 15], now);
        lane.settle(15);
        assert_eq!(lane.commit_point(), None, "14 waits");
        lane.settle(14);
        assert_eq!(lane.commit_point(), Some(16));
    }

    #[test]
    fn messages_behind_a_pending_head_are_reported_waiting_once() {
        let now = Instant::now();
        let (a, b) = (ConversationId::generate(), ConversationId::generate());
        let mut lane = Lane::default();
        read(&mut lane, &a, &[0, 1, 2], now);
        read(&mut lane, &b, &[3, 4], now);
        assert!(
            lane.waiting_behind_pending().is_empty(),
            "no head is PENDING"
        );

        let mut taken = lane.take_due(now, 1);
        let at = taken
            .iter()
            .position(|q| q[0].message.conversation_id == a)
            .unwrap();
        let mut head = taken.swap_remove(at).pop_front().unwrap();
        for parked in taken.into_iter().flatten() {
            lane.put_back(parked);
        }
        head.announced_pending = true;
        lane.put_back(head);

        let seqs = |waiting: Vec<(&OutboundMessage, &CorrelationId)>| {
            waiting.iter().map(|(m, _)| m.seq).collect::<Vec<_>>()
        };
        assert_eq!(seqs(lane.waiting_behind_pending()), [1, 2]);
        assert!(lane.waiting_behind_pending().is_empty(), "marked once");
        read(&mut lane, &a, &[5], now);
        read(&mut lane, &b, &[6], now);
        assert_eq!(
            seqs(lane.waiting_behind_pending()),
            [5],
            "only the newcomer behind a"
        );
        assert_eq!(
            lane.announced_pending(),
            4,
            "a's head and the three behind it"
        );
    }
}

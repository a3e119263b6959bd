//! Messages: gap-free idempotent `seq`, compare-and-set status writes, history pages, readers' positions.

use super::{accepted, conversation, record};
use crate::ids::{ConversationId, MessageId, UserId};
use crate::model::{HistoryQuery, Message, ReadReceipt, Reading, StatusChange};
use crate::ports::{Recorded, StatusWrite, Stores};
use crate::status::MessageStatus;
use std::sync::Arc;

fn write(message: &Message, status: MessageStatus, at: i64) -> StatusWrite {
    let mut next = message.clone();
    next.status = status;
    next.delivered_at = Some(at);
    StatusWrite {
        from: message.status,
        message: next,
        change: StatusChange {
            status,
            at,
            detail: Some(format!("{status} detail")),
            correlation_id: Some("corr-1".into()),
        },
    }
}

pub(super) async fn messages_get_gap_free_idempotent_seq(stores: &Stores) {
    let sender = UserId::generate();
    stores
        .conversations
        .insert_conversation(&conversation("seq-1", &[&sender]))
        .await
        .expect("insert");
    let first: Vec<_> = (0..5)
        .map(|i| accepted("seq-1", &sender, &format!("m{i}")))
        .collect();
    let stored = record(stores, &first).await;
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(stored.iter().all(|m| m.status == MessageStatus::Sent));

    let mut redelivered = first[3..].to_vec();
    redelivered.push(accepted("seq-1", &sender, "m5"));
    let orphan = accepted("seq-2", &sender, "no such conversation");
    redelivered.push(orphan.clone());
    let again = stores
        .messages
        .record_messages(&redelivered)
        .await
        .expect("record");
    let seqs: Vec<_> = again
        .iter()
        .map(|r| match r {
            Recorded::Stored(m) => Some(m.seq),
            Recorded::NoConversation => None,
        })
        .collect();
    assert_eq!(
        seqs,
        [Some(4), Some(5), Some(6), None],
        "redelivery keeps seq; a message without its conversation is not stored"
    );
    assert_eq!(
        stores
            .messages
            .message(&orphan.message_id)
            .await
            .expect("message"),
        None
    );
    let page = stores
        .messages
        .history(&ConversationId::parse("seq-1").unwrap(), &query(100))
        .await
        .expect("history");
    assert_eq!(
        page.messages.len(),
        6,
        "a redelivered message is never duplicated"
    );
}

pub(super) async fn status_writes_compare_and_set(stores: &Stores) {
    let sender = UserId::generate();
    stores
        .conversations
        .insert_conversation(&conversation("status-1", &[&sender]))
        .await
        .expect("insert");
    let message = record(stores, &[accepted("status-1", &sender, "x")])
        .await
        .remove(0);
    let delivered = write(&message, MessageStatus::Delivered, 10);
    let stale = write(&message, MessageStatus::Failed, 11);
    let read = write(&delivered.message, MessageStatus::Read, 12);
    let saved = stores
        .messages
        .save_statuses(&[delivered.clone(), stale, read.clone()])
        .await
        .expect("save");
    assert_eq!(
        saved,
        [true, false, true],
        "a write decided from a status the message has left is refused"
    );
    let id = &message.message_id;
    let now = stores
        .messages
        .message(id)
        .await
        .expect("message")
        .expect("stored");
    assert_eq!(now, read.message, "the saved state is the last write's");

    let history = stores.messages.status_history(id).await.expect("history");
    let steps: Vec<_> = history.iter().map(|s| s.status).collect();
    assert_eq!(
        steps,
        [
            MessageStatus::Sent,
            MessageStatus::Delivered,
            MessageStatus::Read
        ]
    );
    assert_eq!(
        history[1], delivered.change,
        "a step keeps its detail and correlation"
    );

    let found = stores
        .messages
        .messages(&[id.clone(), MessageId::generate()])
        .await
        .expect("messages");
    assert_eq!(found, vec![now], "only existing messages are loaded");
}

pub(super) async fn recording_saves_the_settling_change_in_the_same_write(stores: &Stores) {
    let sender = UserId::generate();
    stores
        .conversations
        .insert_conversation(&conversation("settle-1", &[&sender]))
        .await
        .expect("insert");
    let (settled, left) = (
        accepted("settle-1", &sender, "settled"),
        accepted("settle-1", &sender, "left SENT"),
    );
    let orphan = accepted("settle-2", &sender, "no such conversation");
    let settled_id = settled.message_id.clone();
    let deliver = move |message: &Message| {
        (message.message_id == settled_id).then(|| write(message, MessageStatus::Delivered, 20))
    };
    let batch = [settled.clone(), left, orphan];
    let answers = stores
        .messages
        .record_and_settle(&batch, Arc::new(deliver.clone()))
        .await
        .expect("record");
    let [
        (Recorded::Stored(first), Some(saved)),
        (Recorded::Stored(second), None),
        (Recorded::NoConversation, None),
    ] = &answers[..]
    else {
        panic!("unexpected answers {answers:?}");
    };
    assert_eq!(
        (first.status, first.seq, second.status, second.seq),
        (MessageStatus::Sent, 1, MessageStatus::Sent, 2),
        "the answer is the message as recorded, before the change"
    );
    let id = &first.message_id;
    let now = stores.messages.message(id).await.expect("message");
    assert_eq!(now.as_ref(), Some(&saved.message), "the change is saved");
    let steps: Vec<_> = stores
        .messages
        .status_history(id)
        .await
        .expect("history")
        .into_iter()
        .map(|s| s.status)
        .collect();
    assert_eq!(steps, [MessageStatus::Sent, MessageStatus::Delivered]);

    // Recorded again, the message is found DELIVERED: a change decided as if it were SENT is refused.
    let stale = move |message: &Message| {
        let mut sent = message.clone();
        sent.status = MessageStatus::Sent;
        Some(write(&sent, MessageStatus::Failed, 30))
    };
    let again = stores
        .messages
        .record_and_settle(&[settled], Arc::new(stale))
        .await
        .expect("record again");
    assert_eq!(
        again,
        [(Recorded::Stored(saved.message.clone()), None)],
        "found as it is, and the stale change is not saved"
    );
}

fn query(limit: u32) -> HistoryQuery {
    HistoryQuery {
        limit,
        offset: 0,
        after: None,
        before: None,
        ascending: true,
    }
}

pub(super) async fn history_pages(stores: &Stores) {
    let sender = UserId::generate();
    let batch: Vec<_> = (1..=10)
        .map(|i| accepted("paging", &sender, &i.to_string()))
        .collect();
    stores
        .conversations
        .insert_conversation(&conversation("paging", &[&sender]))
        .await
        .expect("insert");
    record(stores, &batch).await;
    let id = ConversationId::parse("paging").unwrap();
    let seqs = |page: crate::model::HistoryPage| {
        (
            page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            page.has_more,
        )
    };
    assert_eq!(
        seqs(stores.messages.history(&id, &query(4)).await.unwrap()),
        (vec![1, 2, 3, 4], true)
    );
    assert_eq!(
        seqs(
            stores
                .messages
                .history(
                    &id,
                    &HistoryQuery {
                        after: Some(8),
                        ..query(4)
                    }
                )
                .await
                .unwrap()
        ),
        (vec![9, 10], false)
    );
    assert_eq!(
        seqs(
            stores
                .messages
                .history(
                    &id,
                    &HistoryQuery {
                        before: Some(4),
                        ascending: false,
                        ..query(2)
                    }
                )
                .await
                .unwrap()
        ),
        (vec![3, 2], true)
    );
    assert_eq!(
        seqs(
            stores
                .messages
                .history(
                    &id,
                    &HistoryQuery {
                        offset: 9,
                        ..query(5)
                    }
                )
                .await
                .unwrap()
        ),
        (vec![10], false)
    );
}

pub(super) async fn readings_count_what_others_sent_past_the_receipt(stores: &Stores) {
    let (ann, bob) = (UserId::generate(), UserId::generate());
    let ids = [
        "reading-empty",
        "reading-others",
        "reading-part",
        "reading-own",
    ];
    for id in ids {
        stores
            .conversations
            .insert_conversation(&conversation(id, &[&ann, &bob]))
            .await
            .expect("insert");
    }
    let sent = |id, senders: &[&UserId]| {
        senders
            .iter()
            .map(|s| accepted(id, s, "hi"))
            .collect::<Vec<_>>()
    };
    record(stores, &sent("reading-others", &[&bob, &bob, &bob])).await;
    record(
        stores,
        &sent("reading-part", &[&bob, &bob, &ann, &bob, &ann]),
    )
    .await;
    record(stores, &sent("reading-own", &[&ann, &ann])).await;
    stores
        .receipts
        .advance_receipt(&ReadReceipt {
            conversation_id: ConversationId::parse("reading-part").unwrap(),
            user_id: ann.clone(),
            up_to_seq: 2,
            read_at: 1,
        })
        .await
        .expect("receipt");
    let readings = |reader: UserId, ids: Vec<&'static str>| async move {
        let ids: Vec<_> = ids
            .into_iter()
            .map(|id| ConversationId::parse(id).unwrap())
            .collect();
        stores
            .messages
            .readings(&reader, &ids)
            .await
            .expect("readings")
    };
    let at = |last_seq, read_up_to, unread| Reading {
        last_seq,
        read_up_to,
        unread,
    };
    assert_eq!(
        readings(ann.clone(), ids.to_vec()).await,
        [at(0, 0, 0), at(3, 0, 3), at(5, 2, 1), at(2, 0, 0)],
        "no message; others' without a receipt; past the receipt; one's own messages are never unread"
    );
    assert_eq!(
        readings(
            bob.clone(),
            vec!["reading-own", "unknown-1", "reading-part", "reading-own"]
        )
        .await,
        [at(2, 0, 2), at(0, 0, 0), at(5, 0, 2), at(2, 0, 2)],
        "one answer per conversation asked, in the order asked; an unknown one is all zeros"
    );
    assert!(readings(ann, Vec::new()).await.is_empty());
}

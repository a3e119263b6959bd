//! A conversation's order in the SQLite store lives in two parts, the recent messages and the sorted runs they are
//! moved into: every read must see one order whichever part holds each message, across runs and restarts, and a
//! store of the earlier layout (one index entry a message) must open with its order intact.

use chat4all_core::contract;
use chat4all_core::events::MessageAccepted;
use chat4all_core::ids::{ConversationId, MessageId, UserId};
use chat4all_core::model::{Conversation, ConversationKind, HistoryQuery, ReadReceipt};
use chat4all_core::ports::{Recorded, Stores};
use chat4all_embedded::SqliteStore;
use std::path::Path;
use std::sync::Arc;

#[tokio::test]
async fn the_store_contract_holds_when_runs_are_merged_every_few_messages() {
    for merge_every in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::open_merging_every(&dir.path().join("store.db"), merge_every).unwrap();
        contract::store::run_all(Stores::all_in(Arc::new(store))).await;
    }
}

fn conversation(id: &str, members: &[&UserId]) -> Conversation {
    Conversation {
        conversation_id: ConversationId::parse(id).unwrap(),
        kind: ConversationKind::Group,
        name: None,
        members: members.iter().map(|m| (*m).clone()).collect(),
        created_at: 1,
        created_by: members[0].clone(),
    }
}

fn accepted(conversation: &str, sender: &UserId) -> MessageAccepted {
    MessageAccepted {
        message_id: MessageId::generate(),
        conversation_id: ConversationId::parse(conversation).unwrap(),
        sender_id: sender.clone(),
        recipient_id: None,
        content: "hi".into(),
        file_id: None,
        expires_at: None,
        via: None,
        timestamp: 1000,
    }
}

/// Records messages one call each, as the router's batches arrive; returns their seqs.
async fn send(stores: &Stores, conversation: &str, senders: &[&UserId]) -> Vec<u64> {
    let mut seqs = Vec::new();
    for sender in senders {
        let recorded = stores
            .messages
            .record_messages(&[accepted(conversation, sender)])
            .await
            .unwrap();
        match &recorded[..] {
            [Recorded::Stored(m)] => seqs.push(m.seq),
            other => panic!("not stored: {other:?}"),
        }
    }
    seqs
}

fn page(after: Option<u64>, before: Option<u64>, ascending: bool, offset: u64) -> HistoryQuery {
    HistoryQuery {
        limit: 3,
        offset,
        after,
        before,
        ascending,
    }
}

/// The seqs and `has_more` of a page.
async fn seqs(stores: &Stores, id: &ConversationId, query: HistoryQuery) -> (Vec<u64>, bool) {
    let got = stores.messages.history(id, &query).await.unwrap();
    (got.messages.iter().map(|m| m.seq).collect(), got.has_more)
}

/// Checks that pages of every shape the API asks for see the one order 1..=`last` of `id`: walks of pages of 3
/// both ways (each page straddles wherever the parts meet), and offsets.
async fn check_pages(stores: &Stores, id: &ConversationId, last: u64) {
    let mut walked = Vec::new();
    loop {
        let (page, more) = seqs(stores, id, page(walked.last().copied(), None, true, 0)).await;
        walked.extend(page);
        if !more {
            break;
        }
    }
    assert_eq!(walked, (1..=last).collect::<Vec<_>>(), "walked forward");
    let mut walked = Vec::new();
    loop {
        let (page, more) = seqs(stores, id, page(None, walked.last().copied(), false, 0)).await;
        walked.extend(page);
        if !more {
            break;
        }
    }
    assert_eq!(walked, (1..=last).rev().collect::<Vec<_>>(), "walked back");
    assert_eq!(
        seqs(stores, id, page(Some(1), Some(last), true, last - 5)).await,
        (vec![last - 3, last - 2, last - 1], false),
        "an offset past most of a bounded range"
    );
    assert_eq!(
        seqs(stores, id, page(None, None, false, last - 2)).await,
        (vec![2, 1], false),
        "an offset into the oldest"
    );
}

/// `reader`'s (last seq, read up to, unread) in `id`.
async fn reading(stores: &Stores, reader: &UserId, id: &ConversationId) -> (u64, u64, u64) {
    let all = stores
        .messages
        .readings(reader, std::slice::from_ref(id))
        .await
        .unwrap();
    (all[0].last_seq, all[0].read_up_to, all[0].unread)
}

#[tokio::test]
async fn pages_and_unread_counts_span_the_sorted_runs_and_the_recent_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (ann, bob) = (UserId::generate(), UserId::generate());
    let id = ConversationId::parse("order").unwrap();
    {
        // A slice moved after every message, in turn: whichever slice the conversation has, 16 messages end with
        // a run of at least 8 and at least 1 recent.
        let stores = Stores::all_in(Arc::new(SqliteStore::open_merging_every(&path, 1).unwrap()));
        stores
            .conversations
            .insert_conversation(&conversation("order", &[&ann, &bob]))
            .await
            .unwrap();
        let senders: Vec<&UserId> = (1..=16)
            .map(|n| if n % 2 == 0 { &bob } else { &ann })
            .collect();
        assert_eq!(
            send(&stores, "order", &senders).await,
            (1..=16).collect::<Vec<_>>()
        );
        let (sorted, recent, kept) = parts(&path);
        assert!(
            sorted >= 8 && recent >= 1 && sorted + recent == 16,
            "{sorted} sorted, {recent} recent"
        );
        assert!(
            kept <= 8,
            "{kept} recent rows kept: at most a turn of the 8 slices"
        );
        check_pages(&stores, &id, 16).await;
        stores
            .receipts
            .advance_receipt(&ReadReceipt {
                conversation_id: id.clone(),
                user_id: ann.clone(),
                up_to_seq: 1,
                read_at: 5,
            })
            .await
            .unwrap();
        assert_eq!(
            reading(&stores, &ann, &id).await,
            (16, 1, 8),
            "bob's 2, 4, ... 16 from both parts; ann's own never count"
        );
    }
    // Reopened: everything recent has become a run, and the order goes on where it was.
    let stores = Stores::all_in(Arc::new(SqliteStore::open(&path).unwrap()));
    assert_eq!(parts(&path), (16, 0, 0));
    check_pages(&stores, &id, 16).await;
    assert_eq!(reading(&stores, &ann, &id).await, (16, 1, 8));
    assert_eq!(send(&stores, "order", &[&bob]).await, [17]);
    assert_eq!(parts(&path), (16, 1, 1));
    check_pages(&stores, &id, 17).await;
}

/// How many entries the sorted runs hold, how many recent ones are not moved yet, and how many recent rows are
/// kept (moved ones stay until every slice has moved past them).
fn parts(path: &Path) -> (i64, i64, i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get(0)).unwrap();
    (
        count("SELECT COUNT(*) FROM message_order"),
        count(
            "SELECT COUNT(*) FROM recent_messages n WHERE n.message_no >
                 COALESCE((SELECT merged_through FROM order_runs WHERE slice = n.slice), 0)",
        ),
        count("SELECT COUNT(*) FROM recent_messages"),
    )
}

/// The schema as migrations 1 to 7 left it.
fn store_of_the_earlier_layout(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    for sql in [
        include_str!("../migrations/0001_initial.sql"),
        include_str!("../migrations/0002_files.sql"),
        include_str!("../migrations/0003_status_correlation.sql"),
        include_str!("../migrations/0004_controls.sql"),
        include_str!("../migrations/0005_groups.sql"),
        include_str!("../migrations/0006_identities.sql"),
        include_str!("../migrations/0007_seq_from_index.sql"),
    ] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 7).unwrap();
    conn
}

#[tokio::test]
async fn a_store_of_one_index_entry_a_message_keeps_its_order_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (ann, bob) = (UserId::generate(), UserId::generate());
    {
        let conn = store_of_the_earlier_layout(&path);
        conn.execute(
            "INSERT INTO conversations (conversation_id, kind, name, created_by, created_at) VALUES ('order', 'group', NULL, ?1, 1)",
            [ann.as_str()],
        )
        .unwrap();
        for user in [&ann, &bob] {
            conn.execute(
                "INSERT INTO members (conversation_id, user_id, joined_at) VALUES ('order', ?1, 1)",
                [user.as_str()],
            )
            .unwrap();
        }
        // Inserted out of seq order, as rows of several conversations interleave.
        for seq in [3, 1, 2, 7, 5, 4, 6] {
            let sender = if seq % 2 == 0 { &ann } else { &bob };
            conn.execute(
                "INSERT INTO messages (message_id, conversation_id, seq, sender_id, content, status, timestamp)
                 VALUES (?1, 'order', ?2, ?3, 'hi', 'SENT', 1000)",
                rusqlite::params![MessageId::generate().as_str(), seq, sender.as_str()],
            )
            .unwrap();
        }
    }
    let stores = Stores::all_in(Arc::new(SqliteStore::open(&path).unwrap()));
    let id = ConversationId::parse("order").unwrap();
    check_pages(&stores, &id, 7).await;
    assert_eq!(
        reading(&stores, &ann, &id).await,
        (7, 0, 4),
        "bob sent 1, 3, 5, 7"
    );
    assert_eq!(send(&stores, "order", &[&bob]).await, [8], "seq goes on");
}
